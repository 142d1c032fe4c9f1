"""An IVOA TAP service over the release database (``hpcpipe serve``), on Starlette.

Endpoints, under ``/tap`` (the TAP base URL to give pyvo or TOPCAT):

* ``/tap/sync`` (GET or POST): synchronous queries. Parameters (names in any case):
  ``QUERY``; ``LANG`` (``ADQL``, the default, translated by :mod:`hpcpipe.catalog.adql`, or
  ``SQL`` for DuckDB SQL); ``REQUEST=doQuery`` (optional, as TAP 1.1 allows); ``MAXREC``
  (capped by the service's row limit; a result cut there ends with
  ``INFO name="QUERY_STATUS" value="OVERFLOW"``); ``RESPONSEFORMAT``/``FORMAT`` (``votable``,
  the default, or ``json`` for the web page). Errors come back as a VOTable error document
  (``QUERY_STATUS`` = ``ERROR``) with HTTP status 400.
* ``/tap/tables`` (VOSI tables), ``/tap/capabilities``, ``/tap/availability``.
* ``/``: a small web page (query box, cone search, result table, sky plot) using ``/tap/sync``
  with ``FORMAT=json``; it loads nothing from the network.

The catalogs are also described by ``TAP_SCHEMA`` (``SELECT * FROM TAP_SCHEMA.columns``),
with units, UCDs and descriptions. Every query is read-only and runs with the database's row
limit and timeout (:class:`hpcpipe.catalog.query.ReleaseDatabase`); asynchronous jobs are not
offered.
"""

from __future__ import annotations

import html
import io
import math
from typing import Any

from astropy.io.votable.tree import Info, Resource, VOTableFile
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from hpcpipe.catalog.adql import adql_to_duckdb
from hpcpipe.catalog.query import QueryError, ReleaseDatabase

__all__ = ["make_app", "votable_bytes", "error_votable"]

VOTABLE_TYPE = "application/x-votable+xml"


def votable_bytes(database: ReleaseDatabase, result: Any, overflow: bool) -> bytes:
    """A TAP result document: the rows, UCDs, and ``QUERY_STATUS`` (``OK``/``OVERFLOW``)."""
    table = database.to_astropy(result)
    votable = VOTableFile.from_table(table)
    resource = votable.resources[0]
    resource.type = "results"
    resource.infos.insert(0, Info(name="QUERY_STATUS", value="OK"))
    for field in resource.tables[0].fields:
        ucd = table[field.name].meta.get("ucd") if field.name in table.colnames else None
        if ucd:
            field.ucd = ucd
    if overflow:
        resource.infos.append(Info(name="QUERY_STATUS", value="OVERFLOW"))
    out = io.BytesIO()
    votable.to_xml(out)
    return out.getvalue()


def error_votable(message: str) -> bytes:
    """A TAP error document: ``<INFO name="QUERY_STATUS" value="ERROR">message</INFO>``."""
    votable = VOTableFile()
    resource = Resource(type="results")
    info = Info(name="QUERY_STATUS", value="ERROR")
    info.content = message
    resource.infos.append(info)
    votable.resources.append(resource)
    out = io.BytesIO()
    votable.to_xml(out)
    return out.getvalue()


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _tables_xml(database: ReleaseDatabase) -> str:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
             'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
             'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
             "<schema><name>main</name>"]
    for table, columns in database.tap_tables().items():
        parts.append(f'<table type="output"><name>{html.escape(table)}</name>')
        for column in columns:
            parts.append("<column>")
            parts.append(f"<name>{html.escape(column['column_name'])}</name>")
            for key in ("description", "unit", "ucd"):
                if column.get(key):
                    parts.append(f"<{key}>{html.escape(column[key])}</{key}>")
            size = f' arraysize="{column["arraysize"]}"' if column.get("arraysize") else ""
            parts.append(f'<dataType xsi:type="vs:TAPType"{size}>{column["datatype"]}'
                         "</dataType>")
            parts.append("</column>")
        parts.append("</table>")
    parts.append("</schema></vosi:tableset>")
    return "\n".join(parts)


def _capabilities_xml(base: str, max_rows: int | None) -> str:
    limit = f"<hardLimit><rows>{max_rows}</rows></hardLimit>" if max_rows else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0"
    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"
    xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">
    <interface xsi:type="vs:ParamHTTP" role="std" version="1.1">
      <accessURL use="base">{html.escape(base)}</accessURL>
    </interface>
    <language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>
      <description>ADQL 2.0: TOP, CONTAINS(POINT, CIRCLE), DISTANCE</description></language>
    <outputFormat><mime>{VOTABLE_TYPE}</mime><alias>votable</alias></outputFormat>
    <outputLimit><default unit="row">{max_rows or 0}</default>{limit}</outputLimit>
  </capability>
  <capability standardID="ivo://ivoa.net/std/VOSI#capabilities">
    <interface xsi:type="vs:ParamHTTP"><accessURL use="full">{html.escape(base)}/capabilities
    </accessURL></interface></capability>
  <capability standardID="ivo://ivoa.net/std/VOSI#tables">
    <interface xsi:type="vs:ParamHTTP"><accessURL use="full">{html.escape(base)}/tables
    </accessURL></interface></capability>
</vosi:capabilities>"""


def make_app(database: ReleaseDatabase) -> Starlette:
    """The Starlette application of the TAP service and its page, over ``database``."""

    async def parameters(request: Request) -> dict[str, str]:
        params = {k.upper(): v for k, v in request.query_params.items()}
        if request.method == "POST":
            form = await request.form()
            params.update({k.upper(): str(v) for k, v in form.items()})
        return params

    def execute(params: dict[str, str]) -> tuple[Any, bool]:
        request = params.get("REQUEST", "doQuery")
        if request.lower() != "doquery":
            raise QueryError(f"REQUEST={request!r} is not supported (doQuery)")
        lang = params.get("LANG", "ADQL").upper()
        if "QUERY" not in params:
            raise QueryError("no QUERY parameter")
        if lang.startswith("ADQL"):
            sql = adql_to_duckdb(params["QUERY"])
        elif lang in ("SQL", "DUCKDB"):
            sql = params["QUERY"]
        else:
            raise QueryError(f"LANG={lang!r} is not supported (ADQL, SQL)")
        max_rows = database.max_rows
        if "MAXREC" in params:
            try:
                maxrec = int(params["MAXREC"])
            except ValueError:
                raise QueryError(f"MAXREC={params['MAXREC']!r} is not a whole number") from None
            if maxrec < 0:
                raise QueryError(f"MAXREC={maxrec} is negative")
            max_rows = maxrec if max_rows is None else min(maxrec, max_rows)
        return database.run(sql, max_rows=max_rows)

    async def sync(request: Request) -> Response:
        params = await parameters(request)
        fmt = params.get("RESPONSEFORMAT", params.get("FORMAT", "votable")).lower()
        as_json = fmt in ("json", "application/json")
        if not as_json and fmt not in ("votable", VOTABLE_TYPE, "text/xml",
                                       "application/x-votable+xml;serialization=tabledata"):
            return Response(error_votable(f"RESPONSEFORMAT={fmt!r} is not supported "
                                          "(votable, json)"), 400, media_type=VOTABLE_TYPE)
        try:
            result, overflow = await run_in_threadpool(execute, params)
        except QueryError as exc:
            if as_json:
                return JSONResponse({"error": str(exc)}, 400)
            return Response(error_votable(str(exc)), 400, media_type=VOTABLE_TYPE)
        if as_json:
            columns = []
            for name in result.column_names:
                info = database.column(name) or {}
                columns.append({"name": name, "unit": info.get("unit", ""),
                                "ucd": info.get("ucd", ""),
                                "description": info.get("description", "")})
            rows = [[_json_value(v) for v in row.values()] for row in result.to_pylist()]
            return JSONResponse({"columns": columns, "rows": rows, "overflow": overflow})
        body = await run_in_threadpool(votable_bytes, database, result, overflow)
        return Response(body, media_type=VOTABLE_TYPE)

    async def tables(request: Request) -> Response:
        return Response(_tables_xml(database), media_type="text/xml")

    async def capabilities(request: Request) -> Response:
        base = str(request.url_for("sync")).rsplit("/sync", 1)[0]
        return Response(_capabilities_xml(base, database.max_rows), media_type="text/xml")

    async def availability(request: Request) -> Response:
        return Response('<?xml version="1.0" encoding="UTF-8"?><vosi:availability '
                        'xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">'
                        "<vosi:available>true</vosi:available></vosi:availability>",
                        media_type="text/xml")

    async def asynchronous(request: Request) -> Response:
        return Response(error_votable("asynchronous jobs are not offered: use /tap/sync"), 501,
                        media_type=VOTABLE_TYPE)

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE.replace("@TABLES@", " ".join(
            f"<option>{html.escape(t)}</option>" for t in database.catalogs)))

    routes = [Route("/", page), Route("/tap/sync", sync, methods=["GET", "POST"], name="sync"),
              Route("/tap/tables", tables), Route("/tap/capabilities", capabilities),
              Route("/tap/availability", availability),
              Route("/tap/async", asynchronous, methods=["GET", "POST"])]
    return Starlette(routes=routes)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hpcpipe release: TAP</title>
<style>
body { font-family: sans-serif; margin: 1em 2em; }
textarea { width: 100%; font-family: monospace; }
table.result { border-collapse: collapse; font-size: 12px; }
table.result td, table.result th { border: 1px solid #bbb; padding: 2px 6px; text-align: right; }
#error { color: #b00; white-space: pre-wrap; }
svg { border: 1px solid #888; background: #fcfcff; }
.row { display: flex; gap: 2em; align-items: flex-start; }
</style></head>
<body>
<h1>hpcpipe data release</h1>
<p>ADQL on the release catalogs (TAP base URL: <code id="base"></code>).</p>
<form id="cone">Cone search: table <select id="table">@TABLES@</select>
 ra <input id="ra" size="8" value="150.0"> dec <input id="dec" size="8" value="2.2">
 radius (deg) <input id="radius" size="6" value="0.1">
 <button type="submit">Search</button></form>
<form id="adql"><textarea id="query" rows="4">SELECT TOP 200 id, ra, dec, psfMag FROM objects
WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150.0, 2.2, 0.1))</textarea>
<button type="submit">Run query</button></form>
<p id="status">running...</p><p id="error"></p>
<div class="row"><svg id="sky" width="360" height="360"></svg><div id="result"></div></div>
<script>
"use strict";
const base = new URL("tap", document.baseURI).href;
document.getElementById("base").textContent = base;
function cell(text, tag) { const c = document.createElement(tag); c.textContent = text; return c; }
function show(data) {
  const out = document.getElementById("result"); out.innerHTML = "";
  const table = document.createElement("table"); table.className = "result";
  const head = document.createElement("tr");
  data.columns.forEach(c =>
    head.appendChild(cell(c.name + (c.unit ? " [" + c.unit + "]" : ""), "th")));
  table.appendChild(head);
  data.rows.forEach(r => { const tr = document.createElement("tr");
    r.forEach(v =>
      tr.appendChild(cell(typeof v === "number" ? +v.toPrecision(8) : String(v), "td")));
    table.appendChild(tr); });
  out.appendChild(table);
  const names = data.columns.map(c => c.name.toLowerCase());
  const ira = names.indexOf("ra"), idec = names.indexOf("dec");
  const sky = document.getElementById("sky"); sky.innerHTML = "";
  if (ira >= 0 && idec >= 0 && data.rows.length) {
    const ra = data.rows.map(r => r[ira]), dec = data.rows.map(r => r[idec]);
    const r0 = Math.min(...ra), r1 = Math.max(...ra), d0 = Math.min(...dec), d1 = Math.max(...dec);
    const span = Math.max(r1 - r0, d1 - d0, 1e-6), ns = "http://www.w3.org/2000/svg";
    data.rows.forEach((_, k) => { const p = document.createElementNS(ns, "circle");
      p.setAttribute("cx", 340 - 320 * (ra[k] - r0) / span);  // east to the left
      p.setAttribute("cy", 340 - 320 * (dec[k] - d0) / span);
      p.setAttribute("r", 3); p.setAttribute("fill", "#2255aa"); sky.appendChild(p); });
    const label = (x, y, text) => { const t = document.createElementNS(ns, "text");
      t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", 10);
      t.textContent = text; sky.appendChild(t); };
    label(4, 356, "RA " + r1.toFixed(4) + " (left) to " + r0.toFixed(4) + " deg");
    label(4, 12, "Dec " + d0.toFixed(4) + " (bottom) to " + d1.toFixed(4) + " deg");
  }
  document.getElementById("status").textContent = data.rows.length + " rows" +
    (data.overflow ? " (truncated at the row limit)" : "");
  document.body.dataset.rows = data.rows.length;
}
async function run(query) {
  document.getElementById("error").textContent = "";
  const body = new URLSearchParams(
    {REQUEST: "doQuery", LANG: "ADQL", FORMAT: "json", QUERY: query});
  const response = await fetch(base + "/sync", {method: "POST", body: body});
  const data = await response.json();
  if (!response.ok) { document.getElementById("error").textContent = data.error;
    document.getElementById("status").textContent = "error";
    document.body.dataset.rows = -1; return; }
  show(data);
}
document.getElementById("adql").addEventListener("submit", e => { e.preventDefault();
  run(document.getElementById("query").value); });
document.getElementById("cone").addEventListener("submit", e => { e.preventDefault();
  const v = id => parseFloat(document.getElementById(id).value);
  const q = "SELECT TOP 1000 * FROM " + document.getElementById("table").value +
    " WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', " + v("ra") + ", " + v("dec") +
    ", " + v("radius") + "))";
  document.getElementById("query").value = q; run(q); });
run(document.getElementById("query").value);
</script></body></html>
"""
