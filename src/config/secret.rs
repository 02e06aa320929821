//! Secrets in the config: read like strings, shown as `***` everywhere but where they are used.

use serde::{Deserialize, Serialize};

/// A secret: read from the config like a string, but shown as `***` in logs, `Debug` and
/// `check-config`, so it cannot leak through them.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret given other than through the config file.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// Serializes a URL the operator wrote with its password masked, for `check-config`.
pub(super) fn serialize_masked_url<S: serde::Serializer>(
    url: &str,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&mask_credentials(url))
}

/// Keys whose values are secrets wherever they appear in a config file: their values are
/// masked in every message that quotes the file.
const SECRET_KEYS: &[&str] = &["secret", "password", "token"];

/// `text` with the password of every URL in it (`scheme://user:password@host`) shown as `***`,
/// for log lines and messages that quote a URL the operator wrote.
pub fn mask_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first character that cannot be in one.
        let end = tail
            .find(['/', '?', '#', '"', '\'', '`', ' ', '\n', ','])
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _password)) => out.push_str(&format!("{user}:***")),
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `message`, about config `text`, with nothing secret left in it: the values of the
/// secret-bearing keys (`secret`, `previous_secret`, anything named like a password or token)
/// are replaced by `***` wherever they appear, and so are URL passwords.
pub fn mask_config_message(text: &str, message: &str) -> String {
    let mut message = message.to_owned();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"').to_ascii_lowercase();
        if !SECRET_KEYS.iter().any(|s| key.contains(s)) {
            continue;
        }
        // The value as written, and without its quotes (a message may quote either).
        let value = value.trim();
        let bare = value.trim_matches(|c| c == '"' || c == '\'').trim();
        if bare.is_empty() {
            continue;
        }
        for secret in [value, bare] {
            if !secret.is_empty() {
                message = message.replace(secret, "***");
            }
        }
    }
    mask_credentials(&message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_and_the_rest_kept() {
        assert_eq!(
            mask_credentials("url `redis://:hunter2@cache:6379/0` and http://ann:pw@h/x?q"),
            "url `redis://:***@cache:6379/0` and http://ann:***@h/x?q"
        );
        assert_eq!(
            mask_credentials("http://ann@h/ and http://h:80/"),
            "http://ann@h/ and http://h:80/"
        );
        assert_eq!(mask_credentials("no url"), "no url");
    }

    #[test]
    fn secret_values_are_masked_wherever_a_message_quotes_them() {
        let text = "[auth]\nsecret = \"hunter2hunter2\nx = 1\n";
        let message = "line 2 `secret = \"hunter2hunter2`: invalid string \"hunter2hunter2\"";
        let masked = mask_config_message(text, message);
        assert!(!masked.contains("hunter2"), "{masked}");
        assert!(masked.starts_with("line 2 `secret = ***"), "{masked}");
    }
}
