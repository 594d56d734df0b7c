"""The NIM ranking contract as pydantic models; FastAPI turns them into the OpenAPI schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    # strict: a number is not a string; forbid: a misspelt key ("passage") is an error, not ignored
    model_config = ConfigDict(extra="forbid", strict=True)


class Text(_Strict):
    text: str

    @field_validator("text")
    @classmethod
    def _utf8(cls, value: str) -> str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800") cannot be tokenized
            raise ValueError(
                f"text is not valid Unicode: {exc.reason} at position {exc.start}"
            ) from None
        return value


class RankingRequest(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "reranktune",
                    "query": {"text": "how do I reclaim disk space in postgres?"},
                    "passages": [
                        {"text": "VACUUM reclaims storage occupied by dead tuples."},
                        {"text": "Lambda expressions create anonymous functions."},
                    ],
                    "truncate": "END",
                }
            ]
        },
    )

    model: str = Field(description="Served model id, as listed by GET /v1/models.")
    query: Text
    passages: list[Text] = Field(min_length=1, description="Passages to rank against the query.")
    truncate: Literal["NONE", "END"] = Field(
        "NONE",
        description="NONE: a (query, passage) pair over the model's maximum length is a 400 error. "
        "END: cut the pair at the maximum length, from the passage's end.",
    )


class Ranking(BaseModel):
    index: int = Field(description="Position of the passage in the request.")
    logit: float = Field(description="Relevance score; higher is more relevant.")


class RankingResponse(BaseModel):
    rankings: list[Ranking] = Field(description="One entry per passage, highest logit first.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "reranktune"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    object: Literal["health.response"] = "health.response"
    message: str


class Error(BaseModel):
    detail: str
