"""Reading a JOBS file into checked jobs, and turning one job into the argparse namespace of its CLI command.

A JOBS file is JSON Lines (one object a line; blank lines and lines starting with `#` are skipped) or YAML (a
list of mappings; `.yaml`/`.yml`). Each job names `id` (unique, used as its output folder name) and `job`
(`edit`, `generate` or `mask`); every other key is a long option of that command with dashes as underscores
(`source_prompt`, `no_densify`), or the positional `scene`. True/false flags are written as JSON booleans.
Keys that only the evaluation reads (`target`: a ground-truth edited scene for PSNR) are kept apart; an edit
whose model is `reference:SCENE` (the weight-free prior whose ideal edit is SCENE) is scored against SCENE.

Why the real CLI parsers: a job then means exactly what the same command line means — the same defaults,
choices and types — and every check the command does before work (bad mask, bad model spec) runs unchanged.
The batch names the outputs itself (`DIR/<id>/out.ply`, ...), so output keys are refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("edit", "generate", "mask")
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Options that hold input paths, resolved against the JOBS file's folder when relative.
PATH_KEYS = frozenset({"scene", "mask", "views", "sam", "sam_config", "target"})
# Options that may be a path or something else (a hub id, `sphere`): resolved only if that file/folder exists.
MAYBE_PATH_KEYS = frozenset({"model", "init"})
# Output options: the batch sets these itself inside the job's folder.
OUTPUT_KEYS = frozenset({"out", "mask_out", "save_views", "quiet"})
EVAL_KEYS = frozenset({"target"})


class JobsFileError(ValueError):
    """The JOBS file or one of its jobs is malformed; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Job:
    """One line of a JOBS file, with relative paths already resolved."""

    id: str
    kind: str  # "edit" | "generate" | "mask"
    options: dict[str, Any]  # CLI options (dest names), values as in the file
    evaluation: dict[str, Any] = field(default_factory=dict)  # evaluation-only keys (`target`)
    line: int = 0  # where it came from, for messages

    def fingerprint(self) -> str:
        """A short hash of what the job asks for: a finished job is redone when its definition changes."""
        text = json.dumps({"kind": self.kind, "options": self.options, "evaluation": self.evaluation},
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the job (JSON-safe)."""
        return {"job": self.kind, **self.options, **self.evaluation}


class _RaisingParser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting (a bad job must not end the batch)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise JobsFileError(message)


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """The `edit`, `generate` and `mask` subcommand parsers, built by the CLI modules' own `add_parser`."""
    import importlib

    root = _RaisingParser(prog="python -m engine", add_help=False)
    sub = root.add_subparsers(dest="command")
    for kind in KINDS:
        importlib.import_module(f"engine.cli.{kind}").add_parser(sub)
    return dict(sub.choices)


def _known_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest not in ("help",) and a.dest != argparse.SUPPRESS}


def job_argv(job: Job, outputs: dict[str, str], parser: argparse.ArgumentParser) -> list[str]:
    """The command line (after the command name) that `job` stands for, with the batch's output paths."""
    actions = _known_options(parser)
    argv: list[str] = []
    values = {**job.options, **outputs}
    for dest, value in values.items():
        action = actions[dest]
        if not action.option_strings:  # positional (the scene)
            argv.append(str(value))
            continue
        flag = max(action.option_strings, key=len)
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if value is True:
                argv.append(flag)
            continue
        if value is None:
            continue
        argv.append(f"{flag}={value}")  # one token: a value starting with '-' is not taken for an option
    return argv


def job_namespace(job: Job, outputs: dict[str, str], parsers: dict[str, argparse.ArgumentParser] | None = None):
    """`argparse.Namespace` of the job's command (with `func`), exactly as the CLI would parse it."""
    parsers = parsers or command_parsers()
    parser = parsers[job.kind]
    argv = job_argv(job, outputs, parser)
    try:
        return parser.parse_args(argv)
    except JobsFileError as exc:
        raise JobsFileError(f"job {job.id!r}: {exc}") from None


def output_options(job: Job, folder: Path) -> dict[str, str]:
    """Where the command of `job` writes, inside `folder` (the job's staging folder)."""
    if job.kind == "edit":
        return {"out": str(folder / "out.ply"), "mask_out": str(folder / "mask.npy"), "quiet": True}
    if job.kind == "generate":
        return {"out": str(folder / "out.ply"), "quiet": True}
    return {"out": str(folder / "mask.npy")}


REFERENCE_PREFIX = "reference:"


def _resolve(key: str, value: Any, base: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value
    if key == "model" and value.lower().startswith(REFERENCE_PREFIX):  # reference:SCENE, a ground-truth prior
        return REFERENCE_PREFIX + str(_resolve("scene", value[len(REFERENCE_PREFIX):].strip(), base))
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    if key in PATH_KEYS:
        return str((base / path).resolve())
    if key in MAYBE_PATH_KEYS and (base / path).exists():
        return str((base / path).resolve())
    return value


def check_job(raw: Any, *, source: str, line: int, base: Path,
              parsers: dict[str, argparse.ArgumentParser]) -> Job:
    """One job from its raw mapping: known kind and options, valid id, paths resolved, parseable by the CLI."""
    where = f"{source}:{line}"
    if not isinstance(raw, dict):
        raise JobsFileError(f"{where}: a job must be an object like {{\"id\": ..., \"job\": \"edit\", ...}}")
    raw = dict(raw)
    job_id, kind = raw.pop("id", None), raw.pop("job", None)
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise JobsFileError(f"{where}: \"id\" must be a name of letters, digits, '.', '_' or '-' (it names the "
                            f"job's output folder), got {job_id!r}")
    if kind not in KINDS:
        raise JobsFileError(f"{where}: job {job_id!r}: \"job\" must be one of {', '.join(KINDS)}, got {kind!r}")
    parser = parsers[kind]
    known = _known_options(parser)
    options: dict[str, Any] = {}
    evaluation: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name in OUTPUT_KEYS:
            raise JobsFileError(f"{where}: job {job_id!r}: {key!r} is set by the batch (outputs go to "
                                f"DIR/{job_id}/); remove it")
        if name in EVAL_KEYS and kind == "edit":
            evaluation[name] = _resolve(name, value, base)
            continue
        if name not in known or name == "func":
            options_list = ", ".join(sorted(k for k in known if k not in OUTPUT_KEYS and k != "func"))
            raise JobsFileError(f"{where}: job {job_id!r}: unknown option {key!r} for {kind} (options: "
                                f"{options_list})")
        if isinstance(value, (dict, list)):
            raise JobsFileError(f"{where}: job {job_id!r}: option {key!r} must be a single value, got {value!r}")
        options[name] = _resolve(name, value, base)
    job = Job(job_id, kind, options, evaluation, line)
    try:
        job_namespace(job, output_options(job, Path("/nonexistent")), parsers)
    except JobsFileError as exc:
        raise JobsFileError(f"{where}: {exc}") from None
    return job


def _records(path: Path) -> list[tuple[int, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise JobsFileError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or write JSON Lines") \
                from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise JobsFileError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
        if data is None:
            data = []
        if not isinstance(data, list):
            raise JobsFileError(f"{path}: a YAML jobs file is a list of jobs (lines starting with '- ')")
        return [(i + 1, item) for i, item in enumerate(data)]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise JobsFileError(f"{path}:{number}: not a JSON object ({exc.msg}); one job per line") from None
    return records


def read_jobs(path: str | Path) -> list[Job]:
    """All jobs of a JOBS file, checked before any runs; JobsFileError on the first bad one."""
    path = Path(path)
    if not path.is_file():
        raise JobsFileError(f"{path}: jobs file does not exist")
    parsers = command_parsers()
    base = path.resolve().parent
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for line, raw in _records(path):
        job = check_job(raw, source=str(path), line=line, base=base, parsers=parsers)
        if job.id in seen:
            raise JobsFileError(f"{path}:{line}: job id {job.id!r} already used on line {seen[job.id]}; ids must "
                                "be unique")
        seen[job.id] = line
        jobs.append(job)
    if not jobs:
        raise JobsFileError(f"{path}: no jobs (write one JSON object per line)")
    return jobs
