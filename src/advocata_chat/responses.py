"""What a route can return, by what it takes: each route's `responses=` lists its groups
(`error_responses(*AUTH, *DB, ...)`). tests/test_openapi.py derives the same from the route
table and fails on a missing one."""

from __future__ import annotations

from advocata_chat.errors import (
    ConversationNotFound,
    DatabaseUnavailable,
    InvalidInput,
    PayloadTooLarge,
    Unauthorized,
)

AUTH = (Unauthorized,)  # a bearer token
DB = (DatabaseUnavailable,)  # the route reads or writes the database
PARAMS = (InvalidInput,)  # query or path parameters
CONVERSATION = (ConversationNotFound, InvalidInput)  # a conversation id in the path
JSON_BODY = (PayloadTooLarge, InvalidInput)
CONV = "/conversations/{conversation_id}"
