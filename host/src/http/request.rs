//! Parsing request paths and query strings (percent-decoding, validation).

use hyper::StatusCode;

use super::ApiError;

fn bad(code: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

use cgs_core::contract::percent_decode;

/// Split a path below `/app` into percent-decoded segments. `""` and `"/"` have no segments; a
/// trailing slash or an empty segment is refused, as is a decoded `/`.
pub fn decode_path(path: &str) -> Result<Vec<String>, ApiError> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|seg| {
            if seg.is_empty() {
                return Err(bad("InvalidPath", format!("the path `{path}` has an empty segment")));
            }
            let d = percent_decode(seg, false).ok_or_else(|| {
                bad("InvalidPath", format!("the path segment `{seg}` is not valid percent-encoded UTF-8"))
            })?;
            if d.contains('/') || d == "." || d == ".." || d.chars().any(char::is_control) {
                return Err(bad("InvalidPath", format!("the path segment `{seg}` is not allowed")));
            }
            Ok(d)
        })
        .collect()
}

/// Parse `a=1&b=x%20y` into decoded pairs, in order.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    if query.is_empty() {
        return Ok(Vec::new());
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dk = percent_decode(k, true);
            let dv = percent_decode(v, true);
            match (dk, dv) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => {
                    Err(bad("InvalidQuery", format!("the query parameter `{pair}` is not valid percent-encoded UTF-8")))
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(decode_path("").unwrap(), Vec::<String>::new());
        assert_eq!(decode_path("/").unwrap(), Vec::<String>::new());
        assert_eq!(decode_path("/contracts/c%201").unwrap(), vec!["contracts", "c 1"]);
        assert_eq!(decode_path("/a+b").unwrap(), vec!["a+b"]);
        for bad in ["/a//b", "/a/", "/%2f", "/%zz", "/..", "/%ff", "/a%0a"] {
            assert!(decode_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries() {
        assert_eq!(
            parse_query("scope=a+b&id=%C3%A9&flag&").unwrap(),
            vec![("scope".into(), "a b".into()), ("id".into(), "é".into()), ("flag".into(), String::new())]
        );
        assert!(parse_query("x=%g1").is_err());
    }
}
