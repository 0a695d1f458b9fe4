# The compiled dataset scanner (_scanner.c); see mercure.dicomnet.scanner.
class CompiledScanner:
    values: dict[int, bytes]
    done: bool
    error: str | None
    def __init__(
        self,
        tags: tuple[int, ...],
        limit: int,
        *,
        check_structure: bool,
        implicit: bool,
        big_endian: bool,
    ) -> None: ...
    def feed(self, chunk: bytes | bytearray | memoryview, /) -> bool: ...
    def finish(self) -> None: ...
    def text(self, tag: int, /) -> str | None: ...
