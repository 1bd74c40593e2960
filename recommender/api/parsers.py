"""JSON parsing with orjson (several times faster than json for 10,000-event batches)."""
import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


class FastJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        data = stream.read() if stream is not None else b""
        if not data:
            raise ParseError("The request body is empty: send a JSON document.")
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Malformed JSON: {exc}. Check the body is valid JSON (UTF-8).") from None
