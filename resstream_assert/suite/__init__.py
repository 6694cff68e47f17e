"""The built-in claims suite: ``pytest --pyargs resstream_assert.suite --resstream-model SPEC``."""
