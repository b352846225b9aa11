"""Write the report's LUT-vs-EBOPs background: the design dataset's (EBOPs, Yosys LUTs, quantization kind).

The report of ``hwnas run`` draws seed 001's LUTs-vs-EBOPs figure on the run's synthesized models, over the design
dataset (``bench/data/designs-v1.jsonl``, :mod:`design_dataset`) in grey with its own power-law fit. The installed
package cannot read ``bench/``, so this script writes the few numbers the figure needs as package data,
``src/hwnas/report/lut_ebops_designs.json``: per design with both ``features.ebops`` and the ZCU104 Yosys
``luts`` above 0 the triple ``[ebops, luts, kind]`` (kind ``fixed`` or ``hgq``, ``spec.quant.kind``), with the
dataset's name, the Yosys version and command, and the command that wrote the file. Rows keep the dataset's order;
the output is byte-identical for the same dataset.

    .venv/bin/python bench/lut_ebops_reference.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from design_dataset import DATASET_VERSION, DEFAULT_FILE, XILINX_TARGET, read_designs

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "src" / "hwnas" / "report" / "lut_ebops_designs.json"
COMMAND = ".venv/bin/python bench/lut_ebops_reference.py"


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        return None
    return float(v)


def reference(recs: list[dict[str, Any]], source: str = "bench/data/designs-v1.jsonl") -> dict[str, Any]:
    """The file's content: the designs with EBOPs and LUTs above 0, and where they come from."""
    rows = []
    versions: dict[str, None] = {}
    commands: dict[str, None] = {}
    errors = zero = 0
    for rec in recs:
        if "error" in rec:
            errors += 1
            continue
        syn = (rec.get("synth") or {}).get(XILINX_TARGET) or {}
        ebops, luts = _number((rec.get("features") or {}).get("ebops")), _number(syn.get("luts"))
        if ebops is None or luts is None:
            errors += 1
            continue
        if ebops <= 0 or luts <= 0:  # pruned to constant outputs: no point on a log axis
            zero += 1
            continue
        rows.append([ebops, luts, str(rec["spec"]["quant"]["kind"])])
        versions[str((syn.get("tool_versions") or {}).get("yosys", "unknown"))] = None
        commands[str(syn.get("command", "unknown"))] = None
    return {
        "header": f"LUTs against EBOPs of the design dataset {DATASET_VERSION}: the grey background of the report's "
                  f"LUTs-vs-EBOPs figure (hwnas.report.lut_ebops). Written by `{COMMAND}` from {source}; do not edit "
                  "by hand.",
        "dataset": DATASET_VERSION,
        "source": source,
        "command": COMMAND,
        "device": XILINX_TARGET,
        "yosys": "; ".join(versions),
        "synthesis": "; ".join(commands),
        "designs_in_dataset": len(recs),
        "left_out": f"{errors} without a measurement (error), {zero} with 0 LUTs or 0 EBOPs",
        "columns": ["ebops", "luts", "kind"],
        "designs": rows,
    }


def dumps(ref: dict[str, Any]) -> str:
    """``ref`` as JSON with one design per line."""
    head = {k: v for k, v in ref.items() if k != "designs"}
    text = json.dumps(head, indent=1)[:-2]
    rows = ",\n".join("  " + json.dumps(r) for r in ref["designs"])
    return f'{text},\n "designs": [\n{rows}\n ]\n}}\n'


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=str(DEFAULT_FILE), help="the design dataset (JSON lines)")
    parser.add_argument("--out", default=str(OUTPUT), help="the package data file to write")
    args = parser.parse_args(argv)
    src = Path(args.dataset).resolve()
    ref = reference(read_designs(src), src.relative_to(ROOT).as_posix() if src.is_relative_to(ROOT) else str(src))
    Path(args.out).write_text(dumps(ref))
    kinds = {k: sum(r[2] == k for r in ref["designs"]) for k in dict.fromkeys(r[2] for r in ref["designs"])}
    print(f"{args.out}: {len(ref['designs'])} of {ref['designs_in_dataset']} designs ({kinds}; left out: "
          f"{ref['left_out']}), {ref['yosys']}")


if __name__ == "__main__":
    main()
