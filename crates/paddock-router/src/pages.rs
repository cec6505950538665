//! The pages the router answers itself: indexes (HTML or JSON) and errors.
//!
//! Owns: wording and rendering. Every piece of request input that is echoed is escaped.

use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;

use crate::body::RouterBody;
use crate::table::{Entry, Table};

/// How URLs on the pages are spelled: scheme and the router's port.
#[derive(Clone, Copy)]
pub(crate) struct UrlBase {
    pub(crate) https: bool,
    pub(crate) port: u16,
}

impl UrlBase {
    fn url(self, host: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{host}.localhost:{}", self.port)
    }
}

/// `http://<endpoint>.<run>.localhost:<port>`: the URL the sandbox gets as
/// `PADDOCK_URL_<ENDPOINT>` and `paddock run` prints.
pub fn endpoint_url(endpoint: &str, run: &str, port: u16) -> String {
    format!("http://{endpoint}.{run}.localhost:{port}")
}

/// The variables a run's sandbox gets for its endpoints:
/// `PADDOCK_URL_<ENDPOINT>=http://<endpoint>.<run>.localhost:<port>`, the endpoint name upper
/// case with `-` as `_` (`api-v2` → `PADDOCK_URL_API_V2`).
pub fn url_env<'a>(
    run: &str,
    endpoints: impl IntoIterator<Item = &'a str>,
    port: u16,
) -> Vec<(String, String)> {
    endpoints
        .into_iter()
        .map(|e| {
            (
                format!("PADDOCK_URL_{}", e.to_ascii_uppercase().replace('-', "_")),
                endpoint_url(e, run, port),
            )
        })
        .collect()
}

pub(crate) fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

static HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
static JSON: HeaderValue = HeaderValue::from_static("application/json");
static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

fn respond(status: StatusCode, ct: &HeaderValue, body: String) -> Response<RouterBody> {
    let mut r = Response::new(RouterBody::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, ct.clone());
    r.headers_mut().insert(CACHE_CONTROL, NO_STORE.clone());
    r
}

fn page(status: StatusCode, title: &str, body_html: &str) -> Response<RouterBody> {
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;\
         padding:0 1rem;color:#222}}code{{background:#f3f3f3;padding:0 .2em}}\
         li{{margin:.3em 0}}</style></head>\n<body><h1>{t}</h1>\n{body_html}\n\
         <p><small>paddock router</small></p></body></html>\n",
        t = escape(title)
    );
    respond(status, &HTML, html)
}

#[derive(Serialize)]
struct JsonIndex<'a> {
    port: u16,
    runs: Vec<JsonRun<'a>>,
}

#[derive(Serialize)]
struct JsonRun<'a> {
    name: &'a str,
    run_id: &'a str,
    state: &'a str,
    url: String,
    endpoints: Vec<JsonEndpoint<'a>>,
}

#[derive(Serialize)]
struct JsonEndpoint<'a> {
    name: &'a str,
    port: u16,
    url: String,
}

fn json_run(e: &Entry, base: UrlBase) -> JsonRun<'_> {
    let r = &e.route;
    JsonRun {
        name: &r.name,
        run_id: &r.run_id,
        state: r.state.as_str(),
        url: base.url(&r.name),
        endpoints: e
            .endpoints
            .iter()
            .map(|ep| JsonEndpoint {
                name: &ep.name,
                port: ep.port,
                url: base.url(&format!("{}.{}", ep.name, r.name)),
            })
            .collect(),
    }
}

fn sorted(table: &Table) -> Vec<&Entry> {
    let mut v: Vec<&Entry> = table.runs.values().map(|e| &**e).collect();
    v.sort_by(|a, b| a.route.name.cmp(&b.route.name));
    v
}

fn run_items(out: &mut String, e: &Entry, base: UrlBase) {
    let r = &e.route;
    if e.endpoints.is_empty() {
        out.push_str("<li>no endpoints (declare them with <code>ports:</code> in paddock.yaml or <code>-p web=3000</code>)</li>");
    }
    for ep in &e.endpoints {
        let url = base.url(&format!("{}.{}", ep.name, r.name));
        let _ = write!(
            out,
            "<li><a href=\"{u}\">{u}</a> → port {p} inside the sandbox</li>",
            u = escape(&url),
            p = ep.port
        );
    }
}

/// The index of all runs (bare `localhost`).
pub(crate) fn index(table: &Table, base: UrlBase, json: bool) -> Response<RouterBody> {
    let runs = sorted(table);
    if json {
        let body = JsonIndex {
            port: base.port,
            runs: runs.iter().map(|e| json_run(e, base)).collect(),
        };
        return respond(
            StatusCode::OK,
            &JSON,
            serde_json::to_string_pretty(&body).unwrap_or_default(),
        );
    }
    let mut out = String::new();
    if runs.is_empty() {
        out.push_str("<p>No runs have endpoints. Start one with <code>paddock run -p web=3000 -- …</code>.</p>");
    }
    for e in runs {
        let r = &e.route;
        let _ = write!(
            out,
            "<h2><a href=\"{u}\">{n}</a> <small>{id} · {s}</small></h2><ul>",
            u = escape(&base.url(&r.name)),
            n = escape(&r.name),
            id = escape(&r.run_id),
            s = r.state.as_str()
        );
        run_items(&mut out, e, base);
        out.push_str("</ul>");
    }
    page(StatusCode::OK, "paddock: runs", &out)
}

/// The index of one run's endpoints (`run.localhost` when it has several).
pub(crate) fn run_index(e: &Entry, base: UrlBase, json: bool) -> Response<RouterBody> {
    if json {
        return respond(
            StatusCode::OK,
            &JSON,
            serde_json::to_string_pretty(&json_run(e, base)).unwrap_or_default(),
        );
    }
    let r = &e.route;
    let mut out = format!(
        "<p>Run <code>{}</code> ({}) has these endpoints:</p><ul>",
        escape(&r.run_id),
        r.state.as_str()
    );
    run_items(&mut out, e, base);
    out.push_str("</ul>");
    page(StatusCode::OK, &format!("paddock: {}", r.name), &out)
}

fn live_runs(table: &Table, base: UrlBase) -> String {
    let runs = sorted(table);
    if runs.is_empty() {
        return "<p>There are no runs with endpoints.</p>".into();
    }
    let mut out = String::from("<p>Live runs:</p><ul>");
    for e in runs {
        let _ = write!(
            out,
            "<li><a href=\"{u}\">{n}</a> ({s})</li>",
            u = escape(&base.url(&e.route.name)),
            n = escape(&e.route.name),
            s = e.route.state.as_str()
        );
    }
    out.push_str("</ul>");
    out
}

pub(crate) fn unknown_run(table: &Table, base: UrlBase, name: &str) -> Response<RouterBody> {
    let body = format!(
        "<p>No run is named <code>{}</code>.</p>{}",
        escape(name),
        live_runs(table, base)
    );
    page(StatusCode::NOT_FOUND, "404: unknown run", &body)
}

pub(crate) fn unknown_endpoint(e: &Entry, base: UrlBase, endpoint: &str) -> Response<RouterBody> {
    let mut body = format!(
        "<p>Run <code>{}</code> has no endpoint <code>{}</code>. Its endpoints:</p><ul>",
        escape(&e.route.name),
        escape(endpoint)
    );
    run_items(&mut body, e, base);
    body.push_str("</ul>");
    page(StatusCode::NOT_FOUND, "404: unknown endpoint", &body)
}

pub(crate) fn bad_host(why: &str) -> Response<RouterBody> {
    let body = format!(
        "<p>{}</p><p>The router serves names such as <code>http://web.myapp.localhost</code>: \
         an endpoint, a run name, then <code>.localhost</code>.</p>",
        escape(why)
    );
    page(StatusCode::BAD_REQUEST, "400: not a paddock host", &body)
}

pub(crate) fn stopped(run: &str, endpoint: &str) -> Response<RouterBody> {
    let body = format!(
        "<p>Run <code>{}</code> is stopped, so its endpoint <code>{}</code> cannot be reached. \
         Its name is free for a new run: <code>paddock run --name {} -p …</code>.</p>",
        escape(run),
        escape(endpoint),
        escape(run)
    );
    page(StatusCode::SERVICE_UNAVAILABLE, "503: run stopped", &body)
}

pub(crate) fn not_listening(run: &str, endpoint: &str, port: u16) -> Response<RouterBody> {
    let body = format!(
        "<p>Nothing is listening on port {port} inside run <code>{r}</code> (endpoint \
         <code>{e}</code>): the connection was refused. Is the service started, and \
         listening on 127.0.0.1:{port} or 0.0.0.0:{port}?</p>",
        r = escape(run),
        e = escape(endpoint),
    );
    page(StatusCode::BAD_GATEWAY, "502: service not listening", &body)
}

pub(crate) fn upstream_failed(
    run: &str,
    endpoint: &str,
    port: u16,
    err: &str,
) -> Response<RouterBody> {
    let body = format!(
        "<p>The request to port {port} inside run <code>{r}</code> (endpoint <code>{e}</code>) \
         failed: {err}</p>",
        r = escape(run),
        e = escape(endpoint),
        err = escape(err),
    );
    page(StatusCode::BAD_GATEWAY, "502: bad gateway", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_env() {
        assert_eq!(
            endpoint_url("web", "myapp", 8080),
            "http://web.myapp.localhost:8080"
        );
        assert_eq!(
            url_env("myapp", ["web", "api-v2"], 8081),
            vec![
                (
                    "PADDOCK_URL_WEB".to_string(),
                    "http://web.myapp.localhost:8081".to_string()
                ),
                (
                    "PADDOCK_URL_API_V2".to_string(),
                    "http://api-v2.myapp.localhost:8081".to_string()
                ),
            ]
        );
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
