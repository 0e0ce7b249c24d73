"""The `datasets` cache files a preparation writes along the way, removed once its result is saved.

Every transform of a file-backed dataset (map, filter, shuffle, split) writes its output as
`cache-<fingerprint>.arrow` next to the source's Arrow files: for a Hub or parquet source, in the
HF datasets cache. Our own key under `dataset_prepared_path` decides reuse, so none of them is
ever read again once the prepared data is saved, and without removal every run of a large
dataset would leave another full tokenized copy behind.

Each transform gets a random fingerprint from `fresh_fingerprint` (which also spares `datasets`
from hashing the map function, which pickles the whole tokenizer: seconds for a 150k-token
vocabulary). The fingerprints are remembered here, so `remove_scratch_files` deletes only files
this process wrote, even when several nodes share one cache folder.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_ISSUED: set[str] = set()
"""Fingerprints handed to transforms in this process whose files have not been removed yet."""


def fresh_fingerprint() -> str:
    """A fingerprint for one transform; its cache files are removed by `remove_scratch_files`."""
    fingerprint = uuid.uuid4().hex
    _ISSUED.add(fingerprint)
    return fingerprint


def scratch_file_name(fingerprint: str) -> str:
    """The name `datasets` gives a transform's output (shards add `_00000_of_00002`)."""
    return f"cache-{fingerprint}.arrow"


def remove_scratch_files(datasets: Iterable[Any]) -> int:
    """Delete the cache files our transforms wrote in the folders backing `datasets` -> how many.

    Call it only once nothing reads those datasets any more (the saved copy replaces them)."""
    folders = {Path(item["filename"]).parent for dataset in datasets if dataset is not None
               for item in dataset.cache_files}
    removed = 0
    for folder in folders:
        for path in folder.glob("cache-*.arrow"):
            fingerprint = path.stem.removeprefix("cache-").split("_", 1)[0]
            if fingerprint in _ISSUED:
                path.unlink(missing_ok=True)
                removed += 1
    if folders:
        _ISSUED.clear()  # their files are gone; later preparations start a new set
    return removed
