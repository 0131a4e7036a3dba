//! Where the call records are: SQLite in the data directory (the default), or PostgreSQL when
//! `CALLBRIDGE_DATABASE_URL` names one (`postgres://user:password@host:5432/dbname`), for several instances sharing
//! their records. The URL holds a password: it is a secret, shown redacted.

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::keys::Raw;

/// Reads `CALLBRIDGE_DATABASE_URL`: unset or empty is `None` (SQLite); anything but a `postgres://` or
/// `postgresql://` URL is one error line (the value is not repeated: it may hold a password).
pub(super) fn database_url(errors: &mut Vec<String>, raw: &mut Raw) -> Option<SecretString> {
    let text = raw
        .database_url
        .take()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())?;
    match Url::parse(&text) {
        Ok(url) if matches!(url.scheme(), "postgres" | "postgresql") && url.has_host() => {
            Some(SecretString::from(text))
        }
        Ok(url) => {
            errors.push(format!(
                "CALLBRIDGE_DATABASE_URL is invalid: the scheme {:?} is not a PostgreSQL one (use \
                 postgres://user:password@host:5432/dbname; unset it to keep the call records in SQLite)",
                url.scheme()
            ));
            None
        }
        Err(e) => {
            errors.push(format!(
                "CALLBRIDGE_DATABASE_URL is invalid: {e} (use postgres://user:password@host:5432/dbname)"
            ));
            None
        }
    }
}

/// The URL with its password replaced by `********`, for `check-config` and logs.
pub fn redacted(url: &SecretString) -> String {
    match Url::parse(url.expose_secret()) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("********"));
            }
            let query: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" {
                        "********".into()
                    } else {
                        v
                    };
                    (k.into_owned(), v.into_owned())
                })
                .collect();
            if !query.is_empty() {
                url.query_pairs_mut().clear().extend_pairs(query);
            }
            url.to_string()
        }
        Err(_) => "******** (set)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(value: &str) -> (Option<String>, Vec<String>) {
        let mut raw = Raw {
            database_url: Some(value.to_owned()),
            ..Raw::default()
        };
        let mut errors = Vec::new();
        let url = database_url(&mut errors, &mut raw);
        (url.map(|u| u.expose_secret().to_owned()), errors)
    }

    #[test]
    fn a_postgres_url_is_taken_and_an_empty_one_means_sqlite() {
        let (url, errors) = read("postgres://cb:pw@db.internal:5432/callbridge");
        let (empty, none) = read("  ");

        assert_eq!(
            url.as_deref(),
            Some("postgres://cb:pw@db.internal:5432/callbridge")
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((empty, none.len()), (None, 0));
    }

    #[test]
    fn another_scheme_is_a_config_error_that_does_not_repeat_the_password() {
        let (url, errors) = read("mysql://cb:hunter2@db/callbridge");

        assert_eq!(url, None);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("CALLBRIDGE_DATABASE_URL"), "{errors:?}");
        assert!(!errors[0].contains("hunter2"), "{errors:?}");
    }

    #[test]
    fn the_redacted_url_hides_the_password_and_keeps_the_rest() {
        let url =
            SecretString::from("postgresql://cb:hunter2@db:6432/calls?password=x&sslmode=disable");

        let shown = redacted(&url);

        assert_eq!(
            shown,
            "postgresql://cb:********@db:6432/calls?password=********&sslmode=disable"
        );
    }
}
