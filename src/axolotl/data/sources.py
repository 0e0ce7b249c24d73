"""Loading the rows of one dataset entry: local files/directories, the Hub, remote filesystems.

Everything goes through HF `datasets`; this module only decides which loader to call and turns
failures into errors that say which dataset and what to do (no bare tracebacks offline). One
shortcut: a local JSON-lines file of moderate size is read by pyarrow's JSON reader (the reader
`datasets` itself uses) and written as one Arrow file to `datasets`' per-session scratch folder,
skipping the builder's line-by-line type scan and cache bookkeeping, which cost more than
tokenizing small files; anything that reader refuses takes the normal path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from axolotl.config.locations import DATA_FILE_TYPES, REMOTE_FS_PREFIXES, looks_local
from axolotl.data.errors import DataError
from axolotl.data.scratch import fresh_fingerprint, scratch_file_name


def infer_ds_type(files: list[str]) -> str | None:
    kinds = {DATA_FILE_TYPES.get(Path(f.removesuffix(".gz")).suffix.lower()) for f in files}
    kinds.discard(None)
    return kinds.pop() if len(kinds) == 1 else None


def load_rows(entry: Any, *, split: str | None = None, streaming: bool = False) -> Any:
    """The `datasets.Dataset` (or IterableDataset when streaming) of one dataset entry."""
    import datasets

    path: str | None = entry.path
    split = split or entry.split or "train"
    try:
        if path and path.startswith("https://"):
            return _files(entry, [path], split, streaming, default_type="json")
        if path and path.startswith(REMOTE_FS_PREFIXES):
            return _remote(entry, path, split, streaming)
        local = Path(path).expanduser() if path else None
        if local is not None and local.exists():
            return _local(entry, local, split, streaming)
        if path and looks_local(path):
            raise DataError(f"dataset `{path}`: no such file or directory (relative paths resolve from {Path.cwd()})")
        if entry.data_files and not path:
            return _files(entry, _as_list(entry.data_files), split, streaming)
        return _hub(entry, split, streaming)
    except DataError:
        raise
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise DataError(f"dataset `{path}`: not found ({_first_line(exc)})") from None
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise DataError(f"dataset `{path}`: split `{split}` is not available ({_first_line(exc)})") from None
        raise DataError(f"dataset `{path}`: {_first_line(exc)}") from None


def _as_list(files: str | list[str]) -> list[str]:
    return [files] if isinstance(files, str) else list(files)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _local(entry: Any, path: Path, split: str, streaming: bool) -> Any:
    import datasets

    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                loaded = loaded[split.split("[")[0]]
            return _slice(loaded, split)
        if entry.data_files:
            files = [str(path / f) for f in _as_list(entry.data_files)]
            return _files(entry, files, split, streaming)
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DATA_FILE_TYPES)
        if not files:
            raise DataError(f"dataset `{path}`: the directory holds no json/jsonl/parquet/csv/arrow files")
        return _files(entry, files, split, streaming)
    return _files(entry, [str(path)], split, streaming)


def _files(entry: Any, files: list[str], split: str, streaming: bool, default_type: str | None = None) -> Any:
    import datasets

    builder = entry.ds_type or infer_ds_type(files) or default_type
    if builder is None:
        raise DataError(f"dataset `{entry.path}`: cannot tell the file type of {files[:3]}; set `ds_type` "
                        "(json, parquet, csv, arrow, text)")
    if builder == "json" and not streaming:
        read_directly = _json_lines_read_directly(files, split)
        if read_directly is not None:
            return read_directly
    base_split = split.split("[")[0]
    loaded = datasets.load_dataset(builder, data_files={base_split: files}, split=split, streaming=streaming,
                                   name=_name(entry))
    return loaded


DIRECT_JSON_BYTES = 256 * 2**20
"""Local JSON files up to this total size are read directly (see the module docstring)."""


def _json_lines_read_directly(files: list[str], split: str) -> Any | None:
    """The rows of local .json/.jsonl files, or None to use `load_dataset` (split slicing, other
    files, large files, JSON arrays or mixed-type columns the reader refuses).

    The rows are backed by a file, not held in memory: every later `map` then writes its output
    next to it, where an in-memory source would make `datasets` pickle each worker's whole output
    back through a pipe (more than a third of tokenizing time)."""
    paths = [Path(file) for file in files]
    if "[" in split or not paths or any(path.suffix.lower() not in (".json", ".jsonl") for path in paths):
        return None
    if not all(path.is_file() for path in paths) or sum(path.stat().st_size for path in paths) > DIRECT_JSON_BYTES:
        return None
    import datasets
    import pyarrow as pa
    import pyarrow.json as pa_json
    from datasets.fingerprint import get_temporary_cache_files_directory

    try:
        tables = [pa_json.read_json(str(path)) for path in paths]
        table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    except (pa.ArrowException, ValueError):
        return None
    if not table.num_rows or not table.num_columns or any(_may_have_mixed_keys(column) for column in table.columns):
        return None
    # named like a transform's output, so it goes with them once the prepared data is saved
    target = Path(get_temporary_cache_files_directory()) / scratch_file_name(fresh_fingerprint())
    with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return datasets.Dataset.from_file(str(target))


def _may_have_mixed_keys(column: Any) -> bool:
    """Whether nested objects might not all share one key set. `datasets` stores such fields as
    `Json` instead of a struct; a missing key and a null value look alike once read into a struct,
    so any null inside a present object (or an object with no keys) sends the file to the builder."""
    import pyarrow as pa

    def nested(array: Any) -> bool:
        kind = array.type
        if pa.types.is_struct(kind):
            if kind.num_fields == 0:
                return True
            children = array.flatten()  # children with the parent's nulls applied
            return any(child.null_count > array.null_count or nested(child) for child in children)
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            return nested(array.flatten())
        return False

    return any(nested(chunk) for chunk in column.chunks)


def _name(entry: Any) -> str | None:
    name = getattr(entry, "name", None)
    return name if isinstance(name, str) else None


def _remote(entry: Any, path: str, split: str, streaming: bool) -> Any:
    try:
        import fsspec

        fs, _, _ = fsspec.get_fs_token_paths(path)
        is_dir = fs.isdir(path)
    except ImportError as exc:
        raise DataError(f"dataset `{path}`: the filesystem package for this URL is not installed ({exc}); "
                        "install s3fs / gcsfs / adlfs / ocifs") from None
    except Exception as exc:  # network, credentials: report, do not trace
        raise DataError(f"dataset `{path}`: the remote filesystem cannot be reached ({_first_line(exc)})") from None
    if is_dir:
        import datasets

        return _slice(datasets.load_from_disk(path), split)
    return _files(entry, [path], split, streaming)


def _hub(entry: Any, split: str, streaming: bool) -> Any:
    import datasets

    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        offline_hint = " (offline mode is on: HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)"
    else:
        offline_hint = ""
    try:
        return datasets.load_dataset(entry.path, name=_name(entry), split=split, data_files=entry.data_files,
                                     revision=entry.revision, trust_remote_code=bool(entry.trust_remote_code),
                                     streaming=streaming)
    except FileNotFoundError as exc:  # includes datasets' DatasetNotFoundError
        raise DataError(f"dataset `{entry.path}`: not found on the Hugging Face Hub ({_first_line(exc)}); "
                        "check the id, or set `path` to a local file") from None
    except (ConnectionError, OSError) as exc:
        raise DataError(f"dataset `{entry.path}`: the Hugging Face Hub cannot be reached{offline_hint} "
                        f"({_first_line(exc)}); download it and point `path` at the local copy") from None
    except TypeError:
        # datasets versions without trust_remote_code
        return datasets.load_dataset(entry.path, name=_name(entry), split=split, data_files=entry.data_files,
                                     revision=entry.revision, streaming=streaming)


def _slice(dataset: Any, split: str) -> Any:
    """Apply `train[:10%]` / `train[5:20]` style slicing to an already loaded split."""
    if "[" not in split:
        return dataset
    import datasets

    instruction = datasets.ReadInstruction.from_spec(split)
    (start, end), = [(r.from_, r.to) for r in instruction._relative_instructions]  # noqa: SLF001
    size = len(dataset)
    unit = getattr(instruction._relative_instructions[0], "unit", "abs")  # noqa: SLF001
    lo = _bound(start, unit, size, 0)
    hi = _bound(end, unit, size, size)
    return dataset.select(range(lo, hi))


def _bound(value: int | None, unit: str, size: int, default: int) -> int:
    if value is None:
        return default
    count = round(size * value / 100) if unit == "%" else value
    return max(0, min(size, count if count >= 0 else size + count))
