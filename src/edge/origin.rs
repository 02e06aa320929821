//! The origin allow-list: which browser pages may open the stream or send commands.

/// An empty list allows any origin; a request without `Origin` is not from a browser page, which
/// is what the list guards against, so it is allowed too.
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    match origin {
        Some(origin) if !allowed.is_empty() => {
            allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let list = vec!["https://dash.example.com".to_string()];
        assert!(origin_allowed(&[], Some("https://evil.example")));
        assert!(origin_allowed(&list, Some("https://DASH.example.com")));
        assert!(!origin_allowed(&list, Some("https://evil.example")));
        assert!(origin_allowed(&list, None));
    }
}
