"""Reading forms out of HTML as a browser would submit them, for the configuration page tests.

- :func:`control_names`: every ``name`` of an input, select or textarea in a page.
- :func:`form_pairs`: the (name, value) pairs a browser sends for the first form with a given
  action (or the only form that has a control named ``name``): checked checkboxes only,
  selected options, textarea text, disabled controls left out, no submit button.
"""

from __future__ import annotations

from html.parser import HTMLParser


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict[str, object]] = []
        self.names: list[str] = []
        self._form: dict[str, object] | None = None
        self._select: tuple[str, bool, list[tuple[str, bool]]] | None = None
        self._option: list[str] | None = None
        self._option_attrs: dict[str, str | None] = {}
        self._textarea: tuple[str, bool, list[str]] | None = None

    def _pairs(self) -> list[tuple[str, str]]:
        if self._form is None:
            return []
        pairs = self._form["pairs"]
        assert isinstance(pairs, list)
        return pairs

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = dict(attrs_list)
        name = attrs.get("name")
        if tag in ("input", "select", "textarea") and name:
            self.names.append(name)
        if tag == "form":
            self._form = {"action": attrs.get("action") or "", "pairs": []}
            self.forms.append(self._form)
        elif tag == "input" and name:
            kind = (attrs.get("type") or "text").lower()
            if "disabled" in attrs or kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            default = "on" if kind in ("checkbox", "radio") else ""
            value = attrs.get("value")
            self._pairs().append((name, default if value is None else value))
        elif tag == "select" and name:
            self._select = (name, "disabled" in attrs, [])
        elif tag == "option" and self._select is not None:
            self._option = []
            self._option_attrs = attrs
        elif tag == "textarea" and name:
            self._textarea = (name, "disabled" in attrs, [])

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._option.append(data)
        if self._textarea is not None:
            self._textarea[2].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "option" and self._select is not None and self._option is not None:
            value = self._option_attrs.get("value")
            text = "".join(self._option).strip() if value is None else value
            self._select[2].append((text, "selected" in self._option_attrs))
            self._option = None
        elif tag == "select" and self._select is not None:
            name, disabled, options = self._select
            chosen = [v for v, s in options if s] or [v for v, _ in options[:1]]
            if not disabled and chosen:
                self._pairs().append((name, chosen[-1]))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            name, disabled, parts = self._textarea
            text = "".join(parts)
            if text.startswith("\n"):
                text = text[1:]  # as the HTML parser of a browser does
            if not disabled:
                self._pairs().append((name, text))
            self._textarea = None
        elif tag == "form":
            self._form = None


def control_names(html: str) -> set[str]:
    """Every control name in ``html``."""
    parser = _Forms()
    parser.feed(html)
    return set(parser.names)


def form_pairs(
    html: str, *, action: str | None = None, having: str | None = None
) -> list[tuple[str, str]]:
    """What a browser submits for a form of ``html`` (chosen by ``action`` or a control name)."""
    parser = _Forms()
    parser.feed(html)
    for form in parser.forms:
        pairs = form["pairs"]
        assert isinstance(pairs, list)
        if action is not None and form["action"] != action:
            continue
        if having is not None and not any(name == having for name, _ in pairs):
            continue
        return list(pairs)
    raise AssertionError(f"no form with action={action!r} having={having!r} in the page")


def as_multidict(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Pairs as a dict of lists (what :class:`mercure.webgui.forms.FormData` takes)."""
    result: dict[str, list[str]] = {}
    for name, value in pairs:
        result.setdefault(name, []).append(value)
    return result
