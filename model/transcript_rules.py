"""Settings of the suggestion made from a call's transcript (config `transcripts.classifier`,
`transcripts.categories`, `transcripts.summary`; issue 17 item 2). Pure models; `model/config.py` puts them
into `Transcripts`, ticketbridge/categorize.py applies them.

A category rule is one line of the city's classification standard: its own name (the city's
sub-classification, e.g. 噪音扰民), the national category it belongs to (咨询, 投诉举报, 求助, 意见建议,
其他), the department that usually handles it (承办单位) and the words that point at it, each with a weight.
The summary rules say which places and times of what the caller said are worth showing the agent.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model.destinations import Category

#: the built-in classifier's name (`transcripts.classifier`)
KEYWORDS = "keywords"
#: a classifier is also a `module:attr` path, or a name in this Python entry-point group (ticketbridge/categorize.py)
ENTRY_POINT_GROUP = "hotline12345.classifiers"

#: times a caller mentions (Chinese), in the order tried; a city adds its own with `summary.time_patterns`
DEFAULT_TIME_PATTERNS = [
    r"[0-9零一二三四五六七八九十两]{1,3}月[0-9零一二三四五六七八九十]{1,3}[日号]",
    r"(?:今天|昨天|前天|明天|后天|今晚|昨晚|上周|这周|本周|下周|每天|天天)?"
    r"(?:早上|上午|中午|下午|傍晚|晚上|夜里|半夜|凌晨)?"
    r"[0-9零一二三四五六七八九十两]{1,3}[点时](?:半|[0-9零一二三四五六七八九十]{1,3}分?)?",
    r"(?:今天|昨天|前天|明天|后天|今晚|昨晚|上周|这周|本周|下周|每天|天天)(?:早上|上午|中午|下午|傍晚|晚上|夜里|半夜|凌晨)?",
    r"(?:早上|上午|中午|下午|傍晚|晚上|夜里|半夜|凌晨)",
    r"(?:周|星期|礼拜)[一二三四五六日天末]",
]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _patterns(v: list[str]) -> list[str]:
    for p in v:
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"{p!r} is not a regular expression: {e}") from None
    return v


class CategoryRule(_M):
    """One rule of the keyword classifier: these words heard → this category, sub-classification, department."""

    #: the city's sub-classification (城市分类标准), e.g. 城乡建设/噪音扰民; shown to the agent
    name: str = Field(min_length=1, max_length=64)
    #: the national category it belongs to
    category: Category
    #: 承办单位 the agent is offered with it ('' none)
    department: str = Field("", max_length=64)
    #: word → weight; a plain list gives each word weight 1
    keywords: dict[str, float]
    #: the whole rule's weight (a specific rule over a general one)
    weight: float = Field(1.0, gt=0)

    @field_validator("keywords", mode="before")
    @classmethod
    def _words(cls, v: Any) -> Any:
        if isinstance(v, list):
            v = {w: 1.0 for w in v}
        if isinstance(v, dict):
            for w, weight in v.items():
                if not isinstance(w, str) or not "".join(w.split()):
                    raise ValueError(f"keyword {w!r} is empty")
                if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
                    raise ValueError(f"keyword {w!r}: the weight must be a number above 0, not {weight!r}")
            if not v:
                raise ValueError("a rule needs at least one keyword")
        return v


class SummaryRules(_M):
    """Summary fields taken from what the caller said (ticketbridge/categorize.py `summarize`), never invented."""

    #: 诉求摘要: the caller's first utterance of at least this many characters (spaces not counted)...
    request_min_chars: int = Field(6, ge=1, le=200)
    #: ...cut to this many (…); digit runs in it masked like phone numbers
    request_max_chars: int = Field(80, ge=10, le=1000)
    #: 地点: the city's place names (districts, streets, estates, landmarks) the caller says
    places: list[str] = Field(default_factory=list)
    #: and regular expressions that match an address (e.g. "[一-龥]{2,8}(?:路|街|巷)[0-9一二三四五六七八九十]+号")
    place_patterns: list[str] = Field(default_factory=list)
    #: 时间: regular expressions of the times a caller mentions (default: Chinese dates, clock times, 昨天晚上…)
    time_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_TIME_PATTERNS))
    #: 提及的号码: runs of at least this many digits (spoken digits too) the caller says, shown masked
    number_min_digits: int = Field(7, ge=3, le=20)
    #: at most this many of each field
    max_items: int = Field(5, ge=1, le=50)

    @field_validator("place_patterns", "time_patterns")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        return _patterns(v)
