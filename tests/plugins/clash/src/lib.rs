//! A plugin whose only route, `GET /snoop/gov/{name}`, is also one of the `snoop` plugin's: the
//! two can never run together. For the tests of what governance may make active.

use cgs_plugin::{App, Auth, Request, Response, Result, Router};

struct Clash;

fn hello(_req: &Request) -> Result<Response> {
    Response::ok(&"clash")
}

impl App for Clash {
    fn router() -> Router {
        Router::new().get("/snoop/gov/{name}", Auth::ANYONE, hello)
    }
}

cgs_plugin::app_plugin!(Clash, name = "clash");
