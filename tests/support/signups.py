"""A sign-up racing another: the other one takes a name between this one's lookup of it and
its save, as two callbacks at once can."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection


@contextmanager
def taken_once_looked_up(names: Collection[str] | None = None) -> Iterator[list[str]]:
    """Each name in ``names`` (None: every name) is taken by another user just after a lookup
    of it has run, so the lookup found it free and the save that follows collides. Yields the
    names taken so, in order."""
    taken: list[str] = []

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, *args: Any) -> Any:
        result = execute(sql, params, *args)
        name = _looked_up(sql, params)
        if name is not None and (names is None or name in names) and name not in taken:
            taken.append(name)
            user_model = get_user_model()
            # bulk_create: no save(), which a test may have made fail.
            user_model._default_manager.bulk_create(
                [user_model(**{user_model.USERNAME_FIELD: name})]
            )
        return result

    with connection.execute_wrapper(wrapper):
        yield taken


def _looked_up(sql: str, params: Any) -> str | None:
    """The name an existence query on the user model's USERNAME_FIELD asks about, if ``sql``
    is one (``filter(<field>__iexact=name).exists()``: its last parameter is the name)."""
    user_model = get_user_model()
    quote = connection.ops.quote_name
    table = quote(user_model._meta.db_table)
    column = quote(user_model._meta.get_field(user_model.USERNAME_FIELD).column)
    exists = re.match(rf"SELECT \S+ AS {re.escape(quote('a'))} FROM {re.escape(table)} WHERE ", sql)
    if exists is None or column not in sql or not params:
        return None
    return str(params[-1])
