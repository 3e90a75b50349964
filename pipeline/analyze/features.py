"""Behaviour features of trajectories, derived from the ``steps`` table in DuckDB SQL.

:func:`derive_features` returns one row per (trajectory, feature) the trajectory exhibits, with
the step where it first shows. Feature ids are stable strings that name the behaviour; the same
behaviour always gets the same id. Kinds:

=================== ======================================= ==========================================
kind                feature_id                              present when
=================== ======================================= ==========================================
tool_called         ``tool_called:<tool>``                  the tool was called at least once
tool_order          ``tool_order:<a>-><b>``                 a call to ``a`` precedes a call to write
                                                            action ``b`` (not only adjacent)
write_arg           ``write_arg:<tool>.<arg>=<value>``      write action called with that scalar
                                                            argument value (low-cardinality args)
unconfirmed_write   ``unconfirmed_write:<tool>``            write action called when the last user
                                                            message before it is no explicit yes
tool_error          ``tool_error:<tool>:<signature>``       a tool result was an error with that
                                                            signature (ids, numbers, quotes masked)
unretried_error     ``unretried_error:<tool>``              a tool result was an error and the tool
                                                            is not called again later in the run
repeated_call       ``repeated_call:<tool>``                the same tool called twice with identical
                                                            arguments
transfer            ``transfer:<tool>``                     a transfer/escalation to a human
turns               ``turns:<bucket>``                      number of user turns in that bucket
termination         ``termination:<reason>``                the run ended for that reason
=================== ======================================= ==========================================

``turns`` and ``termination`` describe how a run went rather than what the agent chose to do:
they are tested and reported as diagnostics but never become skills (:data:`DIAGNOSTIC_KINDS`).

:class:`FeatureConfig` is re-exported from :mod:`pipeline.config` (kept free of DuckDB there).
Public through :mod:`pipeline.analyze`.
"""

from __future__ import annotations

import re

import duckdb
import polars as pl

from pipeline.config import FeatureConfig

__all__ = [
    "DIAGNOSTIC_KINDS",
    "FeatureConfig",
    "create_feature_table",
    "derive_features",
    "error_signature",
    "feature_sql",
    "signature_sql",
]

DIAGNOSTIC_KINDS = frozenset({"turns", "termination"})

# Masks applied in order to an error message to get its signature (see :func:`error_signature`).
_MASKS: tuple[tuple[str, str], ...] = (
    (r'"[^"]*"', "<str>"),
    (r"'[^']*'", "<str>"),
    (r"[A-Za-z_]*[0-9][A-Za-z0-9_.:\-]*", "<n>"),
    (r"\s+", " "),
)


def error_signature(message: str) -> str:
    """Normalise an error message into a signature: first line, quoted strings -> ``<str>``,
    tokens holding a digit (ids, numbers, dates) -> ``<n>``, whitespace folded, lower case,
    at most 120 characters. Mirrors the SQL in :func:`derive_features`."""
    text = (message.strip().splitlines() or [""])[0]
    for pattern, replacement in _MASKS:
        text = re.sub(pattern, replacement, text)
    return text.strip().lower()[:120]


def signature_sql(column: str) -> str:
    """The DuckDB SQL expression giving the signature (:func:`error_signature`) of the text
    expression ``column`` (SQL text, e.g. ``"coalesce(error_message, '')"``; trusted, not
    escaped): a ``varchar`` of at most 120 characters. Used by the feature SQL and the failure
    clusters (:func:`pipeline.analyze.queries.failure_clusters`)."""
    blank = "chr(32) || chr(9) || chr(10) || chr(13)"
    expr = f"split_part(trim({column}, {blank}), chr(10), 1)"
    for pattern, replacement in _MASKS:
        expr = (
            f"regexp_replace({expr}, '{pattern.replace(chr(39), chr(39) * 2)}', "
            f"'{replacement}', 'g')"
        )
    return f"left(lower(trim({expr})), 120)"


def feature_sql(con: duckdb.DuckDBPyConnection, config: FeatureConfig) -> str:
    """The SQL ``select`` of the feature rows (unordered) over the ``steps`` and ``trajectories``
    views of ``con``; creates the temp view ``calls`` (tool calls with write/transfer flags) that
    it reads. Columns, in order: trajectory_id, feature_id, kind, step_idx (bigint or null),
    subject, detail (see :func:`derive_features`)."""
    write = config.write_tool_pattern.replace("'", "''")
    transfer = config.transfer_tool_pattern.replace("'", "''")
    confirm = config.confirmation_pattern.replace("'", "''")
    con.execute(f"""
        create or replace temp view calls as
        select trajectory_id, step_idx, tool_name, tool_args,
               regexp_matches(tool_name, '{transfer}', 'i') as is_transfer,
               regexp_matches(tool_name, '{write}', 'i')
                 and not regexp_matches(tool_name, '{transfer}', 'i') as is_write
        from steps where step_type = 'tool_call' and tool_name is not null
    """)
    sig = signature_sql("coalesce(error_message, tool_result_text, '')")
    sql = f"""
    with
    tool_called as (
        select trajectory_id, 'tool_called:' || tool_name as feature_id, 'tool_called' as kind,
               min(step_idx) as step_idx, tool_name as subject, null as detail
        from calls group by all
    ),
    tool_order as (
        select a.trajectory_id, 'tool_order:' || a.tool_name || '->' || b.tool_name,
               'tool_order', min(b.step_idx), b.tool_name, a.tool_name
        from calls a join calls b
          on a.trajectory_id = b.trajectory_id and a.step_idx < b.step_idx
         and b.is_write and a.tool_name <> b.tool_name
        group by all
    ),
    arg_values as (
        select c.trajectory_id, c.step_idx, c.tool_name, k.key as arg,
               json_extract(c.tool_args, '$."' || k.key || '"') as value
        from calls c, unnest(json_keys(c.tool_args)) as k(key)
        where c.is_write and json_valid(c.tool_args) and json_type(c.tool_args) = 'OBJECT'
    ),
    scalar_args as (
        select *, case when json_type(value) = 'VARCHAR' then json_extract_string(value, '$')
                       else value::varchar end as text_value
        from arg_values
        where json_type(value) in ('VARCHAR', 'BOOLEAN', 'BIGINT', 'UBIGINT', 'DOUBLE')
    ),
    low_cardinality as (
        select tool_name, arg from scalar_args group by all
        having count(distinct text_value) <= {int(config.max_arg_values)}
    ),
    write_arg as (
        select s.trajectory_id,
               'write_arg:' || s.tool_name || '.' || s.arg || '=' || s.text_value,
               'write_arg', min(s.step_idx), s.tool_name || '.' || s.arg, s.text_value
        from scalar_args s join low_cardinality using (tool_name, arg)
        group by all
    ),
    last_user as (
        select c.trajectory_id, c.step_idx, c.tool_name,
               (select u.content_text from steps u
                 where u.trajectory_id = c.trajectory_id and u.step_type = 'user'
                   and u.step_idx < c.step_idx
                 order by u.step_idx desc limit 1) as user_text
        from calls c where c.is_write
    ),
    unconfirmed_write as (
        select trajectory_id, 'unconfirmed_write:' || tool_name, 'unconfirmed_write',
               min(step_idx), tool_name, null
        from last_user
        where user_text is null or not regexp_matches(user_text, '{confirm}', 'i')
        group by all
    ),
    errors as (
        select r.trajectory_id, r.step_idx,
               coalesce(r.tool_name, 'unknown_tool') as tool_name, {sig} as signature
        from steps r where r.step_type = 'tool_result' and r.is_error
    ),
    tool_error as (
        select trajectory_id, 'tool_error:' || tool_name || ':' || signature, 'tool_error',
               min(step_idx), tool_name, signature
        from errors group by all
    ),
    unretried_error as (
        select e.trajectory_id, 'unretried_error:' || e.tool_name, 'unretried_error',
               min(e.step_idx), e.tool_name, null
        from errors e
        where not exists (select 1 from calls c
                          where c.trajectory_id = e.trajectory_id
                            and c.tool_name = e.tool_name and c.step_idx > e.step_idx)
        group by all
    ),
    repeated_call as (
        select trajectory_id, 'repeated_call:' || tool_name, 'repeated_call',
               min(second_idx), tool_name, null
        from (select trajectory_id, tool_name, step_idx as second_idx,
                     row_number() over (partition by trajectory_id, tool_name,
                                        coalesce(tool_args, '') order by step_idx) as nth
              from calls where not is_transfer)
        where nth = 2 group by all
    ),
    transfer as (
        select trajectory_id, 'transfer:' || tool_name, 'transfer', min(step_idx), tool_name, null
        from calls where is_transfer group by all
    ),
    turns as (
        select t.trajectory_id,
               'turns:' || case when n <= 3 then '1-3' when n <= 6 then '4-6'
                                when n <= 10 then '7-10' else '11+' end,
               'turns', null::bigint, 'user turns',
               case when n <= 3 then '1-3' when n <= 6 then '4-6'
                    when n <= 10 then '7-10' else '11+' end
        from trajectories t
        join (select trajectory_id, count(*) filter (where step_type = 'user') as n
              from steps group by all) using (trajectory_id)
    ),
    termination as (
        select trajectory_id, 'termination:' || termination_reason, 'termination', null::bigint,
               'termination', termination_reason
        from trajectories where termination_reason is not null
    )
    select * from tool_called
    union all select * from tool_order
    union all select * from write_arg
    union all select * from unconfirmed_write
    union all select * from tool_error
    union all select * from unretried_error
    union all select * from repeated_call
    union all select * from transfer
    union all select * from turns
    union all select * from termination
    """
    return f"""
    select column0 as trajectory_id, column1 as feature_id, column2 as kind,
           column3::bigint as step_idx, column4 as subject, column5::varchar as detail
    from ({sql}) as rows(column0, column1, column2, column3, column4, column5)
    """


def derive_features(con: duckdb.DuckDBPyConnection, config: FeatureConfig) -> pl.DataFrame:
    """Derive behaviour features from the ``steps`` and ``trajectories`` views of ``con``.

    The whole table comes back to Python: for large stores use :func:`create_feature_table`
    and query it in DuckDB instead (as :class:`pipeline.analyze.Analyzer` does).

    Returns:
        polars DataFrame, one row per (trajectory, feature), sorted by feature id and trajectory
        id: ``trajectory_id`` (str), ``feature_id`` (str), ``kind`` (str), ``step_idx`` (int64,
        the first step showing the feature; null for whole-run features), ``subject`` (str: the
        tool, argument or reason the feature is about), ``detail`` (str: the argument value,
        error signature, prior tool).
    """
    frame = con.sql(feature_sql(con, config) + " order by feature_id, trajectory_id").pl()
    return frame.with_columns(
        pl.col("step_idx").cast(pl.Int64), pl.col("detail").cast(pl.String)
    ).sort(["feature_id", "trajectory_id"])


def create_feature_table(
    con: duckdb.DuckDBPyConnection, config: FeatureConfig, name: str = "features"
) -> int:
    """Materialise the feature rows of :func:`derive_features` (same columns, DuckDB types
    varchar and bigint) as the temp table ``name`` of ``con``, sorted by feature id then
    trajectory id, without bringing them to Python. DuckDB keeps it within the connection's
    ``memory_limit``, spilling to its ``temp_directory``. Returns the number of rows."""
    con.execute(
        f"create or replace temp table {name} as "
        + feature_sql(con, config)
        + " order by feature_id, trajectory_id"
    )
    ((count,),) = con.execute(f"select count(*) from {name}").fetchall()
    return int(count)
