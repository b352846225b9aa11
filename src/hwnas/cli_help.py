"""The ``--help`` pages of ``hwnas``: a description paragraph and examples for every sub-command, the global epilog.

:func:`describe` walks the parser that :func:`hwnas.cli.build_parser` built and gives each sub-command parser
(``export``, ``jets generate``, ...) the description and examples of :data:`PAGES`; a sub-command missing from
:data:`PAGES` is an error, so a new command cannot ship without its page. The exit codes printed by
``hwnas --help`` (:data:`EPILOG`) are those of :mod:`hwnas.errors` and ``docs/run.md``, *The command line*.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterator

__all__ = ["EPILOG", "PAGES", "describe", "subcommands"]

_WIDTH = 78

EPILOG = """\
output: results and status lines go to stdout; log messages, progress bars and errors to stderr.
  -q/-v/--log-level go before or after the command (hwnas -q run exp.yaml); a command's own --quiet
  (kept from earlier versions) hides its progress bars.

exit status:
  0    success
  1    failure: the work ran and failed (a verification mismatch, no feasible trial, a tool that
       failed), or an optional tool or package it needs is not installed
  2    usage or configuration error: bad flags, a malformed experiment or file, a refused path
  130  interrupted (Ctrl-C): finished work is kept; the message says how to resume

examples:
  hwnas config --defaults > exp.yaml     # every key, commented
  hwnas run exp.yaml                     # search -> select -> ... -> report; rerun to resume
  hwnas -v search exp.yaml               # one line per trial
  hwnas COMMAND --help                   # a command's description, options and examples
docs: docs/run.md (The command line), docs/search.md, docs/export.md"""

PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "demo": (
        "Train a 64-32-10 MLP on scikit-learn's digits with HGQ: every weight, bias and activation learns its "
        "own fixed-point bit-width, and the loss weighs accuracy against effective bit operations (EBOPs). "
        "Prints the test accuracy, EBOPs and the bit-width histograms before and after training, beside the "
        "same network in float.",
        ("hwnas demo", "hwnas demo --epochs 10 --beta 1e-5 --seed 1")),
    "tasks": (
        "List the built-in tasks (data set, metric, description), or show one task's options with their "
        "defaults: the keys a task: section of an experiment accepts.",
        ("hwnas tasks", "hwnas tasks amc-rml2016")),
    "generate-amc": (
        "Generate a RadioML-like automatic modulation classification data set (rml2016: 11 classes, or "
        "rml2018: 24 classes, frames per class and SNR) into a cache folder. A second call with the same "
        "options loads the cache; the data do not depend on the number of worker processes.",
        ("hwnas generate-amc --preset rml2016 --per-pair 200 --data-dir data",
         "hwnas generate-amc --preset rml2018 --per-pair 1000 --workers 4")),
    "profile-cpu": (
        "Time onnxruntime operators (float and int8) on this machine and write a CPU latency table, which an "
        "experiment names in hardware.cpu_table to price the cpu_latency_ms metric. An existing table is kept "
        "unless --force; an interrupted run leaves no file.",
        ("hwnas profile-cpu cpu_table.json", "hwnas profile-cpu quick.json --grid quick --force")),
    "mcp": (
        "Serve experiments, background jobs and their artefacts to an agent over the Model Context Protocol "
        "(stdio, or streamable HTTP on the loopback with --http). Every path is confined to --root. Needs the "
        "MCP SDK (pip install 'hwnas[agent]'); see docs/agent.md.",
        ("hwnas mcp --root ~/experiments", "hwnas mcp --root . --http 8765 --max-jobs 1")),
    "export": (
        "Export a model file (written by hwnas.export.save_model) along one export path: a QONNX file, an "
        "hls4ml project or an RTL project (Verilog/VHDL). --to and --out are required for a model file. Given "
        "an experiment YAML instead, run the export stage of hwnas run on its selected models (the paths and "
        "options come from its run: section).",
        ("hwnas export model.pt --to qonnx --out model.onnx",
         "hwnas export model.pt --to hls4ml --out prj/ --strategy Resource --reuse-factor 4",
         "hwnas export exp.yaml                  # the experiment's selected models")),
    "verify": (
        "Run a model file through every export path (QONNX, hls4ml C emulation, RTL in Verilator) on test "
        "inputs and count the samples that differ from torch, bit for bit; exit 0 when every path that ran "
        "matches, 1 on any mismatch. A path whose tool is missing is listed as skipped. Given an experiment "
        "YAML, run the verify stage of hwnas run.",
        ("hwnas verify model.pt", "hwnas verify model.pt --paths qonnx,rtl --data x.npy --json verify.json",
         "hwnas verify exp.yaml")),
    "synth": (
        "Export a model file's RTL and synthesize it with Yosys (and nextpnr for ECP5) for a device of the "
        "catalog, then compare LUT/FF/DSP counts with the distributed-arithmetic cost model. --target and "
        "--out are required for a model file. Given an experiment YAML, run the synth stage of hwnas run.",
        ("hwnas synth model.pt --target ZCU104 --out syn/", "hwnas synth exp.yaml --force")),
    "config": (
        "Validate an experiment file and print it with every default filled in (errors name the file, line "
        "and key path), or print the complete default experiment (--defaults) or the reference of every key "
        "(--reference). One of the three is required.",
        ("hwnas config --defaults > exp.yaml", "hwnas config exp.yaml --comments",
         "hwnas config --reference > keys.md")),
    "search": (
        "Create the experiment's study (or resume it) and run worker 0 until the budget (search.n_trials) "
        "is spent, then write the Pareto archive and print the front. Resumable: a second call runs only "
        "the trials not yet run; a trial stopped by Ctrl-C runs again and costs no budget. Exit 1 when no "
        "trial is feasible.",
        ("hwnas search exp.yaml", "hwnas -v search exp.yaml --n-trials 40   # raise the budget, a line per trial")),
    "worker": (
        "Join an existing study (created by hwnas search) from another shell or machine and run its "
        "remaining trials; every worker claims distinct trials and the budget is shared. --worker is "
        "required: a distinct index >= 1 that seeds this worker's sampler.",
        ("hwnas worker exp.yaml --worker 1", "hwnas worker exp.yaml --worker 2 --timeout 3600",
         "hwnas worker exp.yaml --worker 3 --wait 600   # a job array task started with hwnas search")),
    "pareto": (
        "Export the study's Pareto archive again (pareto/: CSV, JSON, the front's models) and print the "
        "front, without running any trial; --json prints the summary as JSON.",
        ("hwnas pareto exp.yaml", "hwnas pareto exp.yaml --json > summary.json")),
    "run": (
        "Take one experiment from search to a verified, reported model on one resumable output folder: "
        "search, select, local, export, verify, synth, baselines, report. A second call skips what is done; "
        "after Ctrl-C it resumes where it stopped.",
        ("hwnas run exp.yaml", "hwnas run exp.yaml --stages select,local,report",
         "hwnas -q run exp.yaml                  # only the report's path and errors")),
    "select": (
        "Apply the experiment's run.select rules (knee, best, cheapest) to the feasible trials of its study "
        "and write selection.json: the select stage of hwnas run.",
        ("hwnas select exp.yaml", "hwnas select exp.yaml --force")),
    "local": (
        "Run the local search of run.local (precision pairs with pruning, a beta sweep or PTQ) on each "
        "selected model and keep the cheapest one within run.local.max_drop: the local stage of hwnas run.",
        ("hwnas local exp.yaml", "hwnas local exp.yaml --force")),
    "report": (
        "Write the HTML report of an experiment's output folder (report/index.html with its figures and "
        "tables) from what the folder holds now: the report stage of hwnas run.",
        ("hwnas report exp.yaml", "hwnas report exp.yaml --force")),
    "receiver": (
        "The neural OFDM receiver of seed 002: hwnas receiver study trains a DeepRx-style receiver on a "
        "5G-like link, quantizes it and compares BLER curves; hwnas receiver search searches its width, depth "
        "and per-layer bit-widths (docs/tasks_receiver.md).",
        ("hwnas receiver study --preset small", "hwnas receiver study --help")),
    "receiver study": (
        "Train a DeepRx-style receiver, quantize it (PTQ variants, QAT int4), measure BLER against LS+LMMSE "
        "and perfect CSI per speed group, and write the gap and size tables and index.html. Resumable: a "
        "second run with the same options reuses the float receiver and the checkpoints in --out.",
        ("hwnas receiver study --preset small --out runs/receiver-small",
         "hwnas receiver study --steps 2000 --variants int8-channel,int4-channel --ebno 0:8:2")),
    "receiver search": (
        "Search the receiver's width, depth and per-layer fixed-point bit-widths (NSGA-II on validation BMD rate "
        "vs BOPs per frame), then draw BLER curves of front models beside LS+LMMSE, perfect CSI and, with "
        "--study, the study's receivers on the same frames. Resumable: a second run continues the search in --out.",
        ("hwnas receiver search --study runs/receiver-small --trials 12 --steps 300",
         "hwnas receiver search --channels 32,64 --blocks 1,2 --weight-bits 4,6,8 --max-bops 2e9")),
    "jets": (
        "Jet tagging (gluon, quark, W, Z, top): hwnas jets generate simulates labelled jets with Pythia 8 and "
        "FastJet into a resumable cache (docs/tasks_jets.md).",
        ("hwnas jets generate --per-class 1000 --out data", "hwnas jets generate --help")),
    "jets generate": (
        "Generate labelled anti-kT jets (Pythia 8 + FastJet) into a cache folder, shard by shard: a killed or "
        "interrupted run resumes, a rerun with the same options loads the cache. Prints the cache folder and "
        "per-class mass and constituent statistics. Needs pip install 'hwnas[jets]'.",
        ("hwnas jets generate --per-class 1000 --seed 0 --out data",
         "hwnas jets generate --classes w,z,t --pt-min 500 --pt-max 1000 --workers 4")),
}


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every sub-command parser under ``parser`` with its name (``"export"``, ``"jets generate"``), depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                yield full, sub
                yield from subcommands(sub, full)


def describe(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` the global epilog and every sub-command its description paragraph and examples."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    for name, sub in subcommands(parser):
        if name not in PAGES:
            raise KeyError(f"hwnas {name}: no help page in hwnas.cli_help.PAGES")
        text, examples = PAGES[name]
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        sub.description = textwrap.fill(text, _WIDTH)
        sub.epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
