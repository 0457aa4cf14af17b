//! `GET /console/`: the web console (`console/`, built into `console/dist/` and committed), embedded
//! in the binary. It uses only the public API, from the same origin; its Content-Security-Policy
//! lets the page load nothing but these three files and talk to nothing but this service.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// The built console: (file name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../../../console/dist/index.html")),
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("../../../console/dist/console.js")),
    ("console.css", "text/css; charset=utf-8", include_bytes!("../../../console/dist/console.css")),
];

/// Scripts and styles from this origin only (no inline script or style, no eval), requests to
/// this origin only, no framing, no plugins, no form posts elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                       img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The answer to `GET /console`, `/console/` or `/console/{asset}`; `None`: no such asset.
pub fn serve(path: &str) -> Option<Response<Full<Bytes>>> {
    if path == "/console" {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
        r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/console/"));
        return Some(r);
    }
    let name = match path.strip_prefix("/console/")? {
        "" => "index.html",
        n => n,
    };
    let (_, content_type, bytes) = ASSETS.iter().find(|(n, _, _)| *n == name)?;
    let mut r = Response::new(Full::new(Bytes::from_static(bytes)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(r)
}
