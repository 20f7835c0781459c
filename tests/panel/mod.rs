//! The web panel against the real binary: plain HTTP (reqwest on
//! loopback) where no browser is needed — `security.rs` (sign-in, cookies,
//! headers, CSRF, same-origin, roles, exposure, secrets) and `pages.rs`
//! (forms, `serve`'s output, the shared live ticker) — and a real headless
//! Chromium in `browser.rs`. The helpers below are shared by all three.

mod browser;
mod explorer;
mod pages;
mod read_pages;
mod security;
mod variants;

use crate::dispatch::create_push;
use crate::support::*;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// A signed-in (or not) HTTP client of one daemon's panel.
pub struct PanelClient {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    /// The body with HTML's escapes undone (to look for a message in it).
    pub fn text(&self) -> String {
        self.body
            .replace("&#34;", "\"")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#60;", "<")
            .replace("&#62;", ">")
            .replace("&#38;", "&")
            .replace("&amp;", "&")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Where a POST says it comes from.
#[derive(Clone, Copy, PartialEq)]
pub enum From {
    /// `Origin` of the panel itself and `Sec-Fetch-Site: same-origin`, as a browser sends.
    Panel,
    /// `Origin: http://evil.example`, `Sec-Fetch-Site: cross-site`.
    OtherSite,
    /// Neither header (a script, not a browser).
    Nowhere,
}

/// A one-time link from `pushd panel login`.
pub fn login_link(d: &TestDaemon, extra: &[&str]) -> String {
    let mut args = vec!["panel", "login"];
    args.extend_from_slice(extra);
    let out = d.cli(&args);
    assert!(out.status.success(), "panel login: {}", stderr(&out));
    let url = stdout(&out).trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    url
}

/// The value of the first `name="csrf"` field of a page.
pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_string())
}

impl PanelClient {
    pub fn new(d: &TestDaemon) -> PanelClient {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        PanelClient {
            rt,
            client,
            base: d.http_base(),
            cookie: None,
            csrf: None,
        }
    }

    /// Opens a fresh login link; keeps the cookie and the CSRF token.
    pub fn sign_in(d: &TestDaemon, viewer: bool) -> PanelClient {
        let mut c = PanelClient::new(d);
        let link = login_link(d, if viewer { &["--viewer"] } else { &[] });
        let r = c.get_url(&link);
        assert_eq!(r.status, 303, "login: {}", r.body);
        let set = r.header("set-cookie").to_string();
        c.cookie = Some(set.split(';').next().expect("cookie pair").to_string());
        let home = c.get("/");
        assert_eq!(home.status, 200, "{}", home.body);
        c.csrf = csrf_of(&home.body);
        c
    }

    pub fn get_url(&self, url: &str) -> Resp {
        self.rt.block_on(async {
            let mut req = self.client.get(url);
            if let Some(c) = &self.cookie {
                req = req.header("cookie", c);
            }
            let resp = req.send().await.expect("GET");
            Resp {
                status: resp.status().as_u16(),
                headers: resp.headers().clone(),
                body: resp.text().await.unwrap_or_default(),
            }
        })
    }

    pub fn get(&self, path: &str) -> Resp {
        self.get_url(&format!("{}{path}", self.base))
    }

    /// A form POST; `csrf` is added unless the form has one.
    pub fn post(&self, path: &str, form: &[(&str, &str)], from: From) -> Resp {
        let mut fields: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !form.iter().any(|(k, _)| *k == "csrf")
            && let Some(t) = &self.csrf
        {
            fields.push(("csrf".into(), t.clone()));
        }
        self.rt.block_on(async {
            let mut req = self
                .client
                .post(format!("{}{path}", self.base))
                .form(&fields);
            if let Some(c) = &self.cookie {
                req = req.header("cookie", c);
            }
            match from {
                From::Panel => {
                    req = req
                        .header("origin", &self.base)
                        .header("sec-fetch-site", "same-origin")
                }
                From::OtherSite => {
                    req = req
                        .header("origin", "http://evil.example")
                        .header("sec-fetch-site", "cross-site")
                }
                From::Nowhere => {}
            }
            let resp = req.send().await.expect("POST");
            Resp {
                status: resp.status().as_u16(),
                headers: resp.headers().clone(),
                body: resp.text().await.unwrap_or_default(),
            }
        })
    }
}

/// Audit entries (newest first) with this action.
pub fn audit(d: &TestDaemon, action: &str) -> Vec<Value> {
    let v = d.cli_json(&["audit", "--action", action, "--limit", "100"]);
    v["data"]["entries"].as_array().cloned().unwrap_or_default()
}

/// A push that will not start for an hour (so it can be paused, resumed, cancelled).
pub fn scheduled_push(d: &TestDaemon, name: &str) -> Value {
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    create_push(
        d,
        &[
            "--audience",
            "all",
            "--template",
            "hello",
            "--name",
            name,
            "--at",
            &at,
        ],
    )
}

pub fn status_of(d: &TestDaemon, push: &str) -> String {
    let v = d.cli_json(&["push", "show", push]);
    v["data"]["push"]["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}
