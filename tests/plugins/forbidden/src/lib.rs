//! A plugin that reads a file and the wall clock: it imports `wasi:filesystem` and
//! `wasi:clocks`, so the host must refuse to load it.

use cgs_plugin::{App, Auth, Error, Response, Router};

struct Forbidden;

impl App for Forbidden {
    fn router() -> Router {
        Router::new().get("/forbidden", Auth::ANYONE, |_| {
            let secret =
                std::fs::read_to_string("/etc/passwd").map_err(|e| Error::internal("NoFile", e.to_string()))?;
            let now = std::time::SystemTime::now();
            Response::ok(&serde_json::json!({"secret": secret, "now": format!("{now:?}")}))
        })
    }
}

cgs_plugin::app_plugin!(Forbidden, name = "forbidden");
