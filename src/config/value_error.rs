//! Why one config value is refused, wherever it is written: `[http]
//! public_url` (and `pushd channel webhook --url`), `[control] mode`,
//! `[panel]` exposure, and ranges of hours (`[policy] quiet_hours`, a push's
//! send window). The key is named by the caller; the message says what is
//! wrong and gives an example.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigValueError {
    #[error(
        "{url:?} is not a URL ({reason}); give the public base URL like https://pushd.example.com"
    )]
    PublicUrlNotUrl { url: String, reason: String },
    #[error("{0:?} is not an http(s) URL with a host; give one like https://pushd.example.com")]
    PublicUrlNotHttp(String),
    #[error(
        "{0:?} has a query or fragment; give the base URL only, like https://pushd.example.com (pushd appends /webhooks/NAME)"
    )]
    PublicUrlHasQuery(String),
    #[error("must be an octal file mode like \"0660\"")]
    ModeNotOctal,
    /// The panel would listen beyond loopback without `allow_remote`.
    #[error(
        "http.listen {0} is not a loopback address, so the panel would be reachable from the network; \
         set [panel] allow_remote = true (and put TLS in front of it), or [panel] enabled = false, \
         or listen on 127.0.0.1"
    )]
    PanelExposed(String),
    #[error(
        "{0:?} is not a range of hours like \"21:00-08:00\" (HH:MM-HH:MM, 24h, \
         in each member's timezone; it may wrap past midnight)"
    )]
    HoursNotRange(String),
    #[error("{0:?} starts and ends at the same time (an empty range)")]
    HoursEmpty(String),
}
