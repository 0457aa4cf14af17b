//! A greetings plugin: members set a greeting per name, anyone reads it.
use cgs_plugin::{App, Auth, Error, Request, Response, Result, Router, Table, context};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Greeting {
    text: String,
    author: String,
    at_ms: u64,
}

#[derive(Deserialize)]
struct SetGreeting {
    text: String,
}

static GREETINGS: Table<str, Greeting> = Table::new("greetings");

struct Greetings;

impl App for Greetings {
    fn router() -> Router {
        Router::new().get("/greetings/{name}", Auth::ANYONE, get_greeting).put(
            "/greetings/{name}",
            Auth::MEMBER | Auth::ANONYMOUS,
            set_greeting,
        )
    }
}

fn get_greeting(req: &Request) -> Result<Response> {
    let name = req.param("name")?;
    match GREETINGS.get(name)? {
        Some(g) => Response::ok(&g),
        None => Err(Error::not_found("GreetingNotFound", format!("nobody greeted `{name}` yet"))),
    }
}

fn set_greeting(req: &Request) -> Result<Response> {
    let body: SetGreeting = req.json()?;
    if body.text.is_empty() || body.text.len() > 280 {
        return Err(Error::bad_request("InvalidGreeting", "`text` must be 1 to 280 bytes"));
    }
    let greeting = Greeting { text: body.text, author: req.caller.id.clone(), at_ms: context::tx_time_ms() };
    GREETINGS.put(req.param("name")?, &greeting)?;
    Response::created(&greeting)
}

cgs_plugin::app_plugin!(Greetings, name = "greetings");
// Request and answer schemas of the routes above, for `GET /openapi.json`.
cgs_plugin::api_schema!("api.json");
