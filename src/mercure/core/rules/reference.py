"""What a rule may use, listed from the code that runs it: the functions, the regex helpers
and the text methods with one line each, and the tag keywords rules see.

The web interface's rule editor shows these beside the expression; they are read from
``BUILTINS``, ``REGEX_HELPERS`` and ``METHODS`` (what the compiler accepts) and from the tag
set :mod:`mercure.core.dicomtags` extracts, so the list cannot drift from the language.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pydicom.datadict import DicomDictionary

from mercure.core.dicomtags import JOURNAL_TAGS, TEXT_VRS
from mercure.core.rules.functions import BUILTINS, REGEX_DOCS, REGEX_HELPERS
from mercure.core.rules.methods import METHODS


@dataclass(frozen=True)
class Helper:
    """A function or method a rule may call: ``kind`` is function, regex or method."""

    name: str
    kind: str
    doc: str


@dataclass(frozen=True)
class TagKeyword:
    """A DICOM keyword a rule may read (``tags.Keyword``), with its name and VR."""

    keyword: str
    name: str
    vr: str
    retired: bool = False


def helpers() -> list[Helper]:
    """Every callable name of the rule language, functions first, then methods."""
    found = [Helper(name, "function", f.doc) for name, f in sorted(BUILTINS.items())]
    found += [Helper(name, "regex", REGEX_DOCS[name]) for name in REGEX_HELPERS]
    found += [Helper(name, "method", f.doc) for name, f in sorted(METHODS.items())]
    return found


@functools.cache
def tag_keywords() -> tuple[TagKeyword, ...]:
    """The keywords rules can see, alphabetically: every public DICOM element with a text-like
    VR (what the receiver writes into tags.json), and the reception facts it adds."""
    found = [TagKeyword(keyword, description, "") for keyword, description in JOURNAL_TAGS.items()]
    for vr, _vm, name, retired, keyword in DicomDictionary.values():
        if keyword and vr in TEXT_VRS:
            found.append(TagKeyword(keyword, name, vr, retired == "Retired"))
    return tuple(sorted(found, key=lambda tag: tag.keyword))


def search_tag_keywords(text: str, limit: int = 40) -> list[TagKeyword]:
    """Keywords containing ``text`` (any case) in keyword or name; current before retired,
    keywords starting with the text first."""
    wanted = text.strip().lower()
    if not wanted:
        return []
    hits = [
        tag for tag in tag_keywords() if wanted in tag.keyword.lower() or wanted in tag.name.lower()
    ]
    hits.sort(
        key=lambda tag: (
            tag.retired,
            tag.keyword.lower() != wanted,
            not tag.keyword.lower().startswith(wanted),
        )
    )
    return hits[:limit]
