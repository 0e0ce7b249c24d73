"""The one entry point from a config source to a validated, normalised `AxolotlConfig`.

Order: read YAML (with lines) -> CLI overrides -> deprecated spellings -> plugins ->
dataset entries (shape chosen by method) -> schema types -> derived values -> cross-field
rules -> not-supported-yet features. Every stage collects problems instead of stopping, and
all of them are raised together in one ConfigError.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pydantic import ValidationError

from axolotl.config.aliases import apply_aliases
from axolotl.config.dataset_shapes import entry_class
from axolotl.config.environment import Environment
from axolotl.config.errors import ConfigError, ConfigIssue, KeyPath
from axolotl.config.normalize import normalize
from axolotl.config.overrides import Override, apply_overrides, parse_override_args
from axolotl.config.preflight import run_preflight
from axolotl.config.pydantic_issues import issues_from_validation_error, unknown_key_issue
from axolotl.config.rules import check_rules
from axolotl.config.schema import AxolotlConfig, config_class_for, full_config_class
from axolotl.config.schema.integrations import PLUGIN_ARGS, plugin_owning
from axolotl.config.schema.nesting import nested_block_of
from axolotl.config.sources import RawConfig, load_raw, parse_yaml
from axolotl.config.support import unsupported_issues
from axolotl.integrations.loading import plugin_config_issues, register_custom_plugin

DATASET_LISTS = ("datasets", "test_datasets", "pretraining_dataset")
_PLACEHOLDERS = {"base_model": "<missing>", "learning_rate": 0.0}


@dataclass
class LoadedConfig:
    cfg: AxolotlConfig
    raw: RawConfig
    warnings: list[ConfigIssue] = field(default_factory=list)
    environment: Environment = field(default_factory=Environment)
    skipped_checks: list[str] = field(default_factory=list)


def load_config(source: str | Path, overrides: Sequence[str] | list[Override] = (),
                env: Environment | None = None, check_files: bool = False) -> LoadedConfig:
    """Load, validate and normalise a config; raise ConfigError listing every problem.

    `check_files` also checks what the config points at (local model/data paths, DeepSpeed
    JSON, the model's config), skipping with a note whatever cannot be reached offline.
    """
    raw = load_raw(source)
    return validate_raw(raw, overrides, env, check_files)


def load_config_text(text: str, source: str = "<string>", overrides: Sequence[str] = (),
                     env: Environment | None = None, check_files: bool = False) -> LoadedConfig:
    return validate_raw(parse_yaml(text, source), overrides, env, check_files)


def validate_raw(raw: RawConfig, overrides: Sequence[str] | list[Override] = (),
                 env: Environment | None = None, check_files: bool = False) -> LoadedConfig:
    env = env or Environment.detect()
    parsed = [o for o in overrides if isinstance(o, Override)] or parse_override_args(
        [o for o in overrides if isinstance(o, str)])
    data = copy.deepcopy(raw.data)
    issues = apply_overrides(data, parsed, strict=bool(data.get("strict")))
    override_paths = {o.path: o.location for o in parsed}

    aliased = apply_aliases(data)
    issues += aliased.errors
    warnings = list(aliased.warnings)
    raw = _with_moved_lines(raw, aliased.moved)

    plugins, plugin_issues = _plugins(data)
    issues += plugin_issues
    model = config_class_for(plugins)
    _drop_blank_values(data, model)

    dataset_lists, entry_issues = _take_dataset_entries(data)
    issues += entry_issues
    cfg, type_issues = _validate_tolerant(model, data)
    issues += type_issues
    for list_key, entries in dataset_lists.items():
        setattr(cfg, list_key, entries)
        cfg.model_fields_set.add(list_key)

    issues = _drop_missing_explained_by_typo(issues)
    bad_paths = [i.path for i in issues if i.path]
    derived_errors, derived_warnings = normalize(cfg, env)
    warnings += derived_warnings
    later = derived_errors + check_rules(cfg) + plugin_config_issues(cfg) + unsupported_issues(cfg)
    issues += [i for i in later if not _involves_bad_value(i, bad_paths)]
    skipped: list[str] = []
    if check_files:
        report = run_preflight(cfg)
        issues += [i for i in report.errors if not _involves_bad_value(i, bad_paths)]
        warnings += report.warnings
        skipped = report.skipped
    warnings += [i for i in issues if i.severity == "warning"]
    errors = [i for i in issues if i.severity != "warning"]
    cfg.axolotl_config_path = raw.source

    for issue in errors + warnings:
        _locate(issue, raw, override_paths)
    if errors:
        errors.sort(key=lambda i: _line_of(raw, i))
        raise ConfigError(raw.source, errors)
    return LoadedConfig(cfg=cfg, raw=raw, warnings=warnings, environment=env, skipped_checks=skipped)


def _involves_bad_value(issue: ConfigIssue, bad_paths: list[KeyPath]) -> bool:
    """Whether a later issue reads a value that already failed (the rule saw a default)."""
    return any(path[: len(bad)] == bad for path in (issue.path, *issue.related) for bad in bad_paths)


def _drop_missing_explained_by_typo(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """`learnin_rate` already says "did you mean `learning_rate`"; "missing" would repeat it."""
    suggested = {i.hint for i in issues if i.message == "unknown key" and i.hint}
    return [i for i in issues if not (i.message == "required key is missing" and
                                      f"did you mean `{i.path[-1]}`?" in suggested)]


def _with_moved_lines(raw: RawConfig, moved: dict[KeyPath, KeyPath]) -> RawConfig:
    """Lines of values renamed by an alias, under their new names."""
    if not moved:
        return raw
    lines = dict(raw.lines)
    for new, old in moved.items():
        for path, line in raw.lines.items():
            if path[: len(old)] == old:
                lines[new + path[len(old):]] = line
    return RawConfig(data=raw.data, source=raw.source, lines=lines, base_dir=raw.base_dir)


def _locate(issue: ConfigIssue, raw: RawConfig, override_paths: dict[KeyPath, str]) -> None:
    """Point at the command-line flag, the key's line, or else the line of a related key."""
    if issue.location is not None:
        return
    if issue.path in override_paths:
        issue.location = override_paths[issue.path]
        if issue.hint and issue.hint.startswith("did you mean `"):
            key = issue.hint.removeprefix("did you mean `").removesuffix("`?")
            flag = ".".join([*map(str, issue.path[:-1]), key]).replace("_", "-")
            issue.hint = f"did you mean `--{flag}`?"
        return
    for path in (issue.path, *issue.related):
        if path in raw.lines:
            issue.location = raw.location(path)
            return
    issue.location = raw.location(issue.path)


def _line_of(raw: RawConfig, issue: ConfigIssue) -> int:
    location = issue.location or ""
    tail = location.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 10**9


def _plugins(data: dict[str, Any]) -> tuple[tuple[str, ...], list[ConfigIssue]]:
    plugins = data.get("plugins") or []
    if not isinstance(plugins, list):
        return (), []
    issues = []
    known = []
    for index, name in enumerate(plugins):
        if name in PLUGIN_ARGS:
            known.append(name)
        elif isinstance(name, str):
            problem = register_custom_plugin(name)  # a user's plugin: imported, its keys registered
            if problem is None:
                known.append(name)
                continue
            near = difflib.get_close_matches(name, sorted(PLUGIN_ARGS), n=1, cutoff=0.9)
            issues.append(ConfigIssue(("plugins", index), f"unknown plugin `{name}`", value=name,
                                      hint=f"did you mean `{near[0]}`?" if near else problem))
    return tuple(known), issues


def _take_dataset_entries(data: dict[str, Any]) -> tuple[dict[str, list[Any]], list[ConfigIssue]]:
    """Validate each dataset entry against the shape its method needs.

    Returns the typed lists (removed from `data`, so top-level validation does not re-check
    them against the wrong shapes) and the problems found. A failing entry is replaced by an
    unvalidated stand-in so list positions stay stable for the later rules.
    """
    typed: dict[str, list[Any]] = {}
    issues: list[ConfigIssue] = []
    for list_key in DATASET_LISTS:
        entries = data.get(list_key)
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            continue
        models = []
        for index, entry in enumerate(entries):
            cls = entry_class(data, list_key, entry)
            try:
                models.append(cls.model_validate(entry))
            except ValidationError as exc:
                issues += issues_from_validation_error(exc, entry, cls, prefix=(list_key, index))
                models.append(cls.model_construct(**{k: v for k, v in entry.items() if k in cls.model_fields}))
        typed[list_key] = models
        del data[list_key]
    return typed, issues


def _validate_tolerant(model: type[AxolotlConfig], data: dict[str, Any]) -> tuple[AxolotlConfig, list[ConfigIssue]]:
    """Validate, and keep going past type errors so later rules still check the rest.

    Keys with errors are dropped (required ones replaced by placeholders) and validation is
    repeated; the returned config is only used to find further problems when issues exist.
    """
    work = dict(data)
    issues: list[ConfigIssue] = []
    for _ in range(4):
        try:
            return model.model_validate(work), issues
        except ValidationError as exc:
            found = issues_from_validation_error(exc, work, model)
            issues += [_explain_plugin_key(i) for i in found]
            for issue in found:
                key = issue.path[0] if issue.path else None
                if key in _PLACEHOLDERS:
                    work[key] = _PLACEHOLDERS[key]
                elif key is not None:
                    work.pop(key, None)
    raise AssertionError("config validation did not converge")  # pragma: no cover


def _explain_plugin_key(issue: ConfigIssue) -> ConfigIssue:
    """Unknown top-level keys that exist elsewhere get a precise hint instead of a guess."""
    if issue.message != "unknown key" or len(issue.path) != 1:
        return issue
    key = str(issue.path[0])
    owner = plugin_owning(key)
    if owner is not None:
        return unknown_key_issue(issue.path, set(), extra_hint=f"this key belongs to the plugin `{owner}`: "
                                 "add it under `plugins:` or remove the key")
    block = nested_block_of(key)
    if block is not None:
        return unknown_key_issue(issue.path, set(), extra_hint=f"`{key}` belongs in {block}: indent it there")
    return issue


def _drop_blank_values(data: dict[str, Any], model: type[AxolotlConfig]) -> None:
    """`key:` left blank means "unset": use the default instead of failing on null."""
    for key in [k for k, v in data.items() if v is None]:
        field_info = model.model_fields.get(key) or next(
            (f for f in model.model_fields.values() if f.alias == key), None)
        if field_info is not None and (field_info.is_required() or
                                       field_info.get_default(call_default_factory=True) is not None):
            del data[key]


def schema_json() -> dict[str, Any]:
    """JSON Schema of every accepted key (plugin keys marked with the plugin they need)."""
    schema = full_config_class().model_json_schema(by_alias=True)
    for plugin, args in PLUGIN_ARGS.items():
        for name in args.model_fields:
            prop = schema.get("properties", {}).get(name)
            if prop is not None:
                prop["x-axolotl-plugin"] = plugin
    schema["title"] = "Axolotl config"
    return schema


__all__ = ["ConfigError", "LoadedConfig", "load_config", "load_config_text", "schema_json", "validate_raw"]
