"""``SeriesTags``: one series' tags, prepared for evaluating many rules against them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from mercure.core.mercuretags import MERCURE_STANDARD_TAGS


class SeriesTags(dict[str, str]):
    """A read-only keyword -> value mapping that remembers its keywords ignoring case.

    ``tags.modality`` finds ``Modality`` (mercure looks tags up ignoring case when the exact
    name is absent). With a plain dict every such miss scans all keywords again; build one
    ``SeriesTags`` per series and every rule evaluated against it shares one index. Lookups
    of present tags run at plain dict speed.

    As in mercure, each of its standard tags (:data:`MERCURE_STANDARD_TAGS`) that the series
    lacks is there as ``''``: ``tags.BodyPartExamined == ''`` is true for a series without
    one. Other tags a series lacks stay absent (a rule reading one is false, with the reason).
    """

    __slots__ = ("_folded",)

    def __init__(
        self,
        tags: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        *,
        standard_tags: bool = True,
    ) -> None:
        super().__init__(tags)
        if standard_tags:
            # mercure's receiver writes its standard tags for every instance, '' when absent.
            for keyword in MERCURE_STANDARD_TAGS:
                dict.setdefault(self, keyword, "")
        self._folded: dict[str, str] | None = None

    def folded(self) -> dict[str, str]:
        """Lower-cased keyword -> keyword as stored (the first one, if several differ by case)."""
        if self._folded is None:
            folded: dict[str, str] = {}
            for key in self:
                folded.setdefault(key.lower(), key)
            self._folded = folded
        return self._folded

    def __reduce__(self) -> tuple[Any, ...]:
        # dict's own pickling refills the copy item by item, which a read-only mapping refuses.
        return (_restore, (dict(self),))

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("SeriesTags is read-only")

    __setitem__ = _read_only
    __delitem__ = _read_only
    __ior__ = _read_only
    clear = _read_only
    pop = _read_only
    popitem = _read_only
    setdefault = _read_only
    update = _read_only


def _restore(tags: dict[str, str]) -> SeriesTags:
    """Unpickle a ``SeriesTags`` as it was (its standard tags are in ``tags`` if it had them)."""
    return SeriesTags(tags, standard_tags=False)
