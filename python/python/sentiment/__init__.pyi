"""Type stubs for the `sentiment` package (see __init__.py for the docs)."""

import os
from collections.abc import Iterable, Iterator
from typing import Any, Literal, Optional, Union, overload

__version__: str

Result = dict[str, Any]
"""{"label": str, "score": float}, plus "logits", "tokens", "truncated"
and "windows" with details=True."""

TextPair = dict[str, str]
"""HF's pipeline's pair input: {"text": str, "text_pair": str}."""

class ModelError(Exception):
    """A model that cannot be used: a corrupt or inconsistent file, or a forward pass that failed."""

class Classifier:
    def __init__(
        self,
        model: Union[str, os.PathLike[str], None] = None,
        *,
        device: str = "cpu",
        precision: Literal["f32", "bf16", "int8"] = "f32",
        threads: Optional[int] = None,
        revision: Optional[str] = None,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> list[str]: ...
    @property
    def precision(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def max_input_tokens(self) -> int: ...
    def precision_warning(self, asked: str) -> Optional[str]: ...
    @overload
    def __call__(
        self,
        inputs: Union[str, TextPair, list[Union[str, TextPair]], tuple[Union[str, TextPair], ...]],
        *,
        top_k: Optional[int] = ...,
        truncation: bool = True,
        batch_size: int = 32,
        function_to_apply: Optional[Literal["default", "softmax", "sigmoid", "none"]] = None,
        long_text: Literal["truncate", "truncate_start", "window"] = "truncate",
        stride: int = 128,
        aggregate: Literal["mean", "max"] = "mean",
        details: bool = False,
    ) -> list[Any]: ...
    @overload
    def __call__(
        self,
        inputs: Iterable[Union[str, TextPair]],
        *,
        top_k: Optional[int] = ...,
        truncation: bool = True,
        batch_size: int = 32,
        function_to_apply: Optional[Literal["default", "softmax", "sigmoid", "none"]] = None,
        long_text: Literal["truncate", "truncate_start", "window"] = "truncate",
        stride: int = 128,
        aggregate: Literal["mean", "max"] = "mean",
        details: bool = False,
    ) -> Iterator[Any]: ...
    def stream(
        self,
        texts: Iterable[Union[str, TextPair]],
        *,
        top_k: Optional[int] = ...,
        truncation: bool = True,
        batch_size: int = 32,
        function_to_apply: Optional[Literal["default", "softmax", "sigmoid", "none"]] = None,
        long_text: Literal["truncate", "truncate_start", "window"] = "truncate",
        stride: int = 128,
        aggregate: Literal["mean", "max"] = "mean",
        details: bool = False,
    ) -> Iterator[Any]: ...
