//! `redis+sentinel://` URLs (`docs/PROTOCOL.md` §11.7): the Sentinels and the master they
//! watch, read once for validation and again by each connection (`crate::input::redis::sentinel`).

/// The scheme of a URL that names Sentinels rather than a server.
pub const SCHEME: &str = "redis+sentinel://";

/// The Sentinels, the master's name, and how to talk to the master, read from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Each Sentinel's `redis://host:port`.
    pub sentinels: Vec<String>,
    /// The master's name, as the Sentinels know it.
    pub master: String,
    /// The master's password, if any.
    pub password: Option<String>,
    /// The master's database.
    pub db: i64,
}

/// Reads a `redis+sentinel://` URL; `Ok(None)` for any other URL; an error says what is wrong
/// (the password never in it).
pub fn parse(url: &str) -> Result<Option<Watched>, String> {
    let Some(rest) = url.strip_prefix(SCHEME) else {
        return Ok(None);
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (password, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => {
            let password = user.split_once(':').map_or(user, |(_, p)| p);
            (Some(password.to_owned()).filter(|p| !p.is_empty()), hosts)
        }
        None => (None, authority),
    };
    let sentinels: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("redis://{h}"))
        .collect();
    let mut parts = path.split('/');
    let master = parts.next().unwrap_or_default().to_owned();
    let db = match parts.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse()
            .map_err(|_| format!("the database {db:?} is not a number"))?,
    };
    if sentinels.is_empty() || master.is_empty() {
        return Err(format!(
            "{SCHEME} needs at least one Sentinel and the master's name, e.g. \
             \"{SCHEME}10.0.0.1:26379,10.0.0.2:26379/mymaster\""
        ));
    }
    Ok(Some(Watched {
        sentinels,
        master,
        password,
        db,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentinel_url_names_its_sentinels_master_and_password() {
        let watched = parse("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380/mymaster/2")
            .unwrap()
            .unwrap();
        assert_eq!(
            watched.sentinels,
            ["redis://10.0.0.1:26379", "redis://10.0.0.2:26380"]
        );
        assert_eq!(watched.master, "mymaster");
        assert_eq!(
            (watched.password.as_deref(), watched.db),
            (Some("s3cret"), 2)
        );
        assert_eq!(parse("redis://127.0.0.1:6379"), Ok(None));
        let err = parse("redis+sentinel://:s3cret@10.0.0.1:26379").unwrap_err();
        assert!(
            err.contains("the master's name") && !err.contains("s3cret"),
            "{err}"
        );
        for url in [
            "redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380/m",
            "redis+sentinel://:s3cret@10.0.0.1:26379/m",
        ] {
            let masked = crate::config::RedisUrl::new(url).masked();
            assert!(
                !masked.contains("s3cret") && masked.contains("10.0.0.1"),
                "{masked}"
            );
        }
    }
}
