//! The public base URL platforms reach pushd's webhooks at (`[http]
//! public_url`, or `pushd channel webhook --url`): an operator's reverse
//! proxy in front of the listener, e.g. `https://chat.example.com/pushd`.

use super::ConfigValueError;

/// `url` checked and normalised (no trailing `/`): http(s), a host, no
/// query or fragment (webhook paths are appended to it). The error says
/// what is wrong and gives an example.
pub fn parse_public_url(url: &str) -> Result<String, ConfigValueError> {
    let parsed =
        reqwest::Url::parse(url.trim()).map_err(|e| ConfigValueError::PublicUrlNotUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ConfigValueError::PublicUrlNotHttp(url.to_string()));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ConfigValueError::PublicUrlHasQuery(url.to_string()));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_or_refused() {
        assert_eq!(
            parse_public_url("https://x.example.com/").unwrap(),
            "https://x.example.com"
        );
        assert_eq!(
            parse_public_url("https://x.example.com/pushd/").unwrap(),
            "https://x.example.com/pushd"
        );
        for bad in [
            "x.example.com",
            "ftp://x.example.com",
            "https://x.example.com/?a=1",
            "https://x/#f",
            "",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_public_url("ftp://x.example.com")
                .unwrap_err()
                .to_string(),
            "\"ftp://x.example.com\" is not an http(s) URL with a host; give one like https://pushd.example.com"
        );
        assert_eq!(
            parse_public_url("https://x/#f").unwrap_err().to_string(),
            "\"https://x/#f\" has a query or fragment; give the base URL only, like https://pushd.example.com \
             (pushd appends /webhooks/NAME)"
        );
    }
}
