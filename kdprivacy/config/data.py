"""The ``data`` block: where the corpus comes from (synthetic, a file, the hub) and how it is split into pools.

Part of :mod:`kdprivacy.config` (import the models from there).
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, ValidationInfo, model_validator

from kdprivacy.fields import PosInt, Seed, Strict, checking_paths, where_relative


class SyntheticSource(Strict):
    n_examples: PosInt = 15000  # about the size of databricks-dolly-15k
    seed: Seed = 1234


class FileSource(Strict):
    path: str | None = None
    format: Literal["auto", "json", "jsonl", "parquet", "csv"] = "auto"
    columns: dict[str, str] = Field(default_factory=dict, description="our field -> the file's column")


class HubSource(Strict):
    name: str | None = None
    split: str = "train"
    revision: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)


class Split(Strict):
    """Pool sizes. ``private``/``public`` null = half of what remains after non-members and dev."""

    seed: Seed = 0
    nonmember: PosInt = 4000
    dev: PosInt = 500
    private: PosInt | None = None
    public: PosInt | None = None


class Data(Strict):
    source: Literal["synthetic", "file", "hub"] = "synthetic"
    synthetic: SyntheticSource = SyntheticSource()
    file: FileSource = FileSource()
    hub: HubSource = HubSource()
    split: Split = Split()
    max_length: PosInt = 512
    max_prompt_length: PosInt = 256

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Data:
        if self.max_prompt_length >= self.max_length:
            raise ValueError(
                f"max_prompt_length ({self.max_prompt_length}) must be smaller than max_length ({self.max_length})"
            )
        if self.source == "file" and not self.file.path:
            raise ValueError("source is 'file' but file.path is not set")
        if self.source == "file" and checking_paths(info):
            path = os.path.expanduser(self.file.path)
            if not os.path.isfile(path):
                what = "is not a file" if os.path.exists(path) else "does not exist"
                raise ValueError(f"file.path {self.file.path!r} {what}{where_relative(self.file.path)}")
        if self.source == "hub" and not self.hub.name:
            raise ValueError("source is 'hub' but hub.name is not set")
        if self.source == "synthetic":
            fixed = self.split.nonmember + self.split.dev + (self.split.private or 0) + (self.split.public or 0)
            halves = (self.split.private is None) + (self.split.public is None)
            if fixed + halves > self.synthetic.n_examples:
                raise ValueError(
                    f"split sizes (nonmember {self.split.nonmember} + dev {self.split.dev} + private "
                    f"{self.split.private} + public {self.split.public}) exceed synthetic.n_examples "
                    f"({self.synthetic.n_examples})"
                )
        return self
