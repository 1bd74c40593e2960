"""The REST API: parse, call one service function, serialize."""
