//! `host/src/http/request.rs` (`decode_path`, `parse_query`): every request's path below `/app`
//! and query string, compiled into the fuzz crate with `#[path]` and an `ApiError` shim.
//!
//! The input is split at the first `?` into path and query, as the host splits the URI.
//!
//! Properties:
//! * errors are 400 with code `InvalidPath` / `InvalidQuery`;
//! * decoded segments are non-empty, contain no `/` or control character and are not `.`/`..`;
//! * percent-encoding the decoded segments (every byte outside the unreserved set) and decoding
//!   again gives the same segments; the same for query pairs; decoding is idempotent on
//!   inputs without `%` and `+`.
#![no_main]

use cgs_fuzz::host_http::request::{decode_path, parse_query};
use libfuzzer_sys::fuzz_target;

fn encode(s: &str, query: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else if query && b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (path, query) = s.split_once('?').unwrap_or((s, ""));

    match decode_path(path) {
        Ok(segments) => {
            for seg in &segments {
                assert!(!seg.is_empty());
                assert!(!seg.contains('/') && seg != "." && seg != "..");
                assert!(!seg.chars().any(char::is_control));
            }
            let again: Vec<String> = segments.iter().map(|g| encode(g, false)).collect();
            let re = format!("/{}", again.join("/"));
            let back = decode_path(if segments.is_empty() { "/" } else { &re }).expect("re-encoded path decodes");
            assert_eq!(back, segments);
            if !path.contains('%') {
                let stripped = path.strip_prefix('/').unwrap_or(path);
                if !stripped.is_empty() {
                    assert_eq!(segments.join("/"), stripped);
                }
            }
        }
        Err(e) => {
            assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST);
            assert_eq!(e.code, "InvalidPath");
        }
    }

    match parse_query(query) {
        Ok(pairs) => {
            let re: Vec<String> =
                pairs.iter().map(|(k, v)| format!("{}={}", encode(k, true), encode(v, true))).collect();
            let back = parse_query(&re.join("&")).expect("re-encoded query parses");
            // `k` and `k=` both decode to (k, ""); empty pairs are dropped.
            let nonempty: Vec<_> = pairs.iter().filter(|(k, v)| !(k.is_empty() && v.is_empty())).cloned().collect();
            let back_nonempty: Vec<_> = back.into_iter().filter(|(k, v)| !(k.is_empty() && v.is_empty())).collect();
            assert_eq!(back_nonempty, nonempty);
        }
        Err(e) => {
            assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST);
            assert_eq!(e.code, "InvalidQuery");
        }
    }
});
