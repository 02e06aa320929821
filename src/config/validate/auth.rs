//! The `[auth]` checks: the secrets, their rollover and the claims to match.

use crate::config::Config;

impl Config {
    /// The `[auth]` checks: a secret long enough for HS256; a rollover needs a current secret
    /// and an end; a claim to match must not be empty.
    pub(super) fn validate_auth(&self, bad: &mut impl FnMut(&str, String)) {
        let secret = self.auth.secret.expose();
        if secret == "***" {
            bad(
                "auth.secret",
                "\"***\" is how check-config shows a secret, not one; write the secret itself, \
                 or keep it in auth.secret_file"
                    .into(),
            );
        } else if !secret.is_empty() && secret.len() < 32 {
            bad(
                "auth.secret",
                format!(
                    "is {} bytes; use at least 32 random bytes for HS256",
                    secret.len()
                ),
            );
        }
        let a = &self.auth;
        let previous = a.previous_secret.expose();
        if a.previous_secret_file.is_some() {
            if a.secret.expose().is_empty() {
                bad(
                    "auth.previous_secret_file",
                    "needs the new secret in auth.secret or auth.secret_file".into(),
                );
            }
            if previous.len() < 32 {
                bad(
                    "auth.previous_secret_file",
                    format!("holds {} bytes; a secret has at least 32", previous.len()),
                );
            }
            match &a.previous_secret_until {
                None => bad(
                    "auth.previous_secret_until",
                    "is required with auth.previous_secret_file: when the old secret stops \
                     verifying, e.g. \"2026-12-08T12:00:00Z\""
                        .into(),
                ),
                Some(until) if a.previous_until().is_none() => bad(
                    "auth.previous_secret_until",
                    format!("{until:?} is not an RFC 3339 time such as \"2026-12-08T12:00:00Z\""),
                ),
                Some(_) => {}
            }
        } else if a.previous_secret_until.is_some() {
            bad(
                "auth.previous_secret_until",
                "has no auth.previous_secret_file to end; set both or neither".into(),
            );
        }
        for (key, value) in [("auth.issuer", &a.issuer), ("auth.audience", &a.audience)] {
            if value.as_deref().is_some_and(str::is_empty) {
                bad(key, "is empty; leave it out to accept any".into());
            }
        }
    }
}
