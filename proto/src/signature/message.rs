//! The view of an HTTP message that RFC 9421 signs: the request line parts or the status, and the header
//! fields. Callers fill it from whatever HTTP library they use; nothing here does I/O.
//!
//! Component values follow RFC 9421 §2.1 and §2.2:
//! - field names are lowercased; each field line's value is trimmed of surrounding spaces and tabs, and several
//!   lines of one field are joined with `", "` in the order they arrived;
//! - `@authority` is lowercased and loses the scheme's default port, `@scheme` is lowercased, an empty `@path`
//!   is `/`, and `@query` is `?` followed by the query (just `?` when there is none).
//!
//! Invariant: a component value never contains a control character other than tab, so no value can smuggle a
//! line break into the signature base and forge another component's line.

use super::SignatureError;

/// An HTTP request or response, reduced to what signatures cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    kind: Kind,
    /// `(lowercased name, trimmed value)`, one entry per field line, in arrival order.
    headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Request {
        method: String,
        scheme: String,
        authority: String,
        path: String,
        query: Option<String>,
    },
    Response {
        status: u16,
    },
}

impl Message {
    /// A request. `authority` is the host (and port) the client addressed: the HTTP/1.1 `Host` header or the
    /// HTTP/2 `:authority`. `query` is the part after `?`, without it; `None` when the target has no `?`.
    pub fn request(
        method: &str,
        scheme: &str,
        authority: &str,
        path: &str,
        query: Option<&str>,
    ) -> Self {
        let scheme = scheme.to_ascii_lowercase();
        let mut authority = authority.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => Some(":443"),
            "http" => Some(":80"),
            _ => None,
        };
        if let Some(port) = default_port {
            if authority.ends_with(port) {
                authority.truncate(authority.len() - port.len());
            }
        }
        let path = if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        };
        Message {
            kind: Kind::Request {
                method: method.to_owned(),
                scheme,
                authority,
                path,
                query: query.map(str::to_owned),
            },
            headers: Vec::new(),
        }
    }

    /// A request from its absolute target URI, e.g. `https://hub.example.com/v1/heartbeats?x=1`.
    pub fn request_from_uri(method: &str, uri: &str) -> Result<Self, SignatureError> {
        let problem = |problem: &'static str| SignatureError::Uri {
            uri: uri.to_owned(),
            problem,
        };
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| problem("it has no scheme (like https://)"))?;
        let mut scheme_chars = scheme.bytes();
        let scheme_ok = scheme_chars.next().is_some_and(|b| b.is_ascii_alphabetic())
            && scheme_chars.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err(problem("the scheme is not valid"));
        }
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(authority_end);
        if authority.is_empty() {
            return Err(problem("it has no host"));
        }
        if authority.contains('@') {
            return Err(problem(
                "it carries user information, which must not be signed or sent",
            ));
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        Ok(Message::request(method, scheme, authority, path, query))
    }

    /// A response with its status code.
    pub fn response(status: u16) -> Self {
        Message {
            kind: Kind::Response { status },
            headers: Vec::new(),
        }
    }

    /// Adds one field line (builder style).
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.add_header(name, value);
        self
    }

    /// Adds one field line; repeated names are kept in order and combined when read.
    pub fn add_header(&mut self, name: &str, value: &str) {
        let value = value.trim_matches([' ', '\t']);
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
    }

    /// The combined value of a field (all its lines joined with `", "`), or `None` when it is absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        let first = values.next()?;
        Some(values.fold(first.to_owned(), |mut joined, value| {
            joined.push_str(", ");
            joined.push_str(value);
            joined
        }))
    }

    /// The value of one component, named as in `Signature-Input` (`@method`, `content-type`, ...).
    pub fn component_value(&self, component: &str) -> Result<String, SignatureError> {
        let value = if component.starts_with('@') {
            self.derived(component)?
        } else {
            if component.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(SignatureError::UppercaseComponent {
                    component: component.to_owned(),
                });
            }
            self.header(component)
                .ok_or_else(|| SignatureError::MissingComponent {
                    component: component.to_owned(),
                })?
        };
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(SignatureError::InvalidComponentValue {
                component: component.to_owned(),
            });
        }
        Ok(value)
    }

    fn derived(&self, component: &str) -> Result<String, SignatureError> {
        let not_applicable = |kind: &'static str| SignatureError::ComponentNotApplicable {
            component: component.to_owned(),
            kind,
        };
        match (&self.kind, component) {
            (Kind::Request { method, .. }, "@method") => Ok(method.clone()),
            (
                Kind::Request {
                    scheme,
                    authority,
                    path,
                    query,
                    ..
                },
                "@target-uri",
            ) => {
                let query = query
                    .as_deref()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                Ok(format!("{scheme}://{authority}{path}{query}"))
            }
            (Kind::Request { authority, .. }, "@authority") => Ok(authority.clone()),
            (Kind::Request { scheme, .. }, "@scheme") => Ok(scheme.clone()),
            (Kind::Request { path, .. }, "@path") => Ok(path.clone()),
            (Kind::Request { query, .. }, "@query") => {
                Ok(format!("?{}", query.as_deref().unwrap_or_default()))
            }
            (Kind::Response { status }, "@status") => Ok(format!("{status:03}")),
            (
                Kind::Response { .. },
                "@method" | "@target-uri" | "@authority" | "@scheme" | "@path" | "@query",
            ) => Err(not_applicable("response")),
            (Kind::Request { .. }, "@status") => Err(not_applicable("request")),
            _ => Err(SignatureError::UnsupportedComponent {
                component: component.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), SignatureError>;

    #[test]
    fn request_components_follow_rfc_9421_section_2_2() -> TestResult {
        let message = Message::request_from_uri(
            "POST",
            "HTTPS://WWW.Example.com:443/path?param=value&foo=bar#frag",
        )?;
        assert_eq!(message.component_value("@method")?, "POST");
        assert_eq!(message.component_value("@scheme")?, "https");
        assert_eq!(message.component_value("@authority")?, "www.example.com");
        assert_eq!(message.component_value("@path")?, "/path");
        assert_eq!(message.component_value("@query")?, "?param=value&foo=bar");
        assert_eq!(
            message.component_value("@target-uri")?,
            "https://www.example.com/path?param=value&foo=bar"
        );
        Ok(())
    }

    #[test]
    fn empty_path_and_missing_query() -> TestResult {
        let message = Message::request_from_uri("GET", "http://example.com:8080")?;
        assert_eq!(message.component_value("@authority")?, "example.com:8080");
        assert_eq!(message.component_value("@path")?, "/");
        assert_eq!(message.component_value("@query")?, "?");
        assert_eq!(
            message.component_value("@target-uri")?,
            "http://example.com:8080/"
        );
        let message = Message::request_from_uri("GET", "https://example.com/?")?;
        assert_eq!(message.component_value("@query")?, "?");
        Ok(())
    }

    #[test]
    fn header_lines_are_trimmed_and_joined() -> TestResult {
        let message = Message::response(200)
            .with_header("Cache-Control", "  max-age=60 ")
            .with_header("cache-control", "\tmust-revalidate")
            .with_header("X-Empty", "   ");
        assert_eq!(
            message.component_value("cache-control")?,
            "max-age=60, must-revalidate"
        );
        assert_eq!(message.component_value("x-empty")?, "");
        assert_eq!(message.component_value("@status")?, "200");
        Ok(())
    }

    #[test]
    fn components_that_cannot_apply_are_errors() {
        let request =
            Message::request("GET", "https", "example.com", "/", None).with_header("x-bad", "a\nb");
        let response = Message::response(404);
        assert!(matches!(
            request.component_value("@status"),
            Err(SignatureError::ComponentNotApplicable { .. })
        ));
        assert!(matches!(
            response.component_value("@path"),
            Err(SignatureError::ComponentNotApplicable { .. })
        ));
        assert!(matches!(
            request.component_value("@request-target"),
            Err(SignatureError::UnsupportedComponent { .. })
        ));
        assert!(matches!(
            request.component_value("Content-Type"),
            Err(SignatureError::UppercaseComponent { .. })
        ));
        assert!(matches!(
            request.component_value("content-type"),
            Err(SignatureError::MissingComponent { .. })
        ));
        assert!(matches!(
            request.component_value("x-bad"),
            Err(SignatureError::InvalidComponentValue { .. })
        ));
    }

    #[test]
    fn malformed_uris_are_errors() {
        for uri in [
            "example.com/foo",
            "://example.com/",
            "1http://example.com/",
            "https:///path",
            "https://u:p@host/",
        ] {
            assert!(
                Message::request_from_uri("GET", uri).is_err(),
                "{uri:?} should be rejected"
            );
        }
    }
}
