//! Secrets out of messages: every URL or connection string a service prints goes through
//! [`redact`] first, so a password given in `--redis-addr`, `--postgres-url` or
//! `--eth-client-url` never reaches a log, an error, or `/status`.

/// `text` with its secrets replaced by `***`:
/// - the password of a URL's user info (`redis://:pw@host`, `postgres://user:pw@host`);
/// - every query parameter's value (`?password=pw&sslmode=require`);
/// - the value of any `…password=` key of a key=value connection string
///   (`host=db password='p w' dbname=x`, PostgreSQL's conninfo form).
///
/// The user name, host, port and path stay: they are what a reader needs to find the
/// server, and are not secrets.
pub fn redact(text: &str) -> String {
    match text.find("://") {
        Some(scheme) => redact_url(text, scheme + 3),
        None => redact_conninfo(text),
    }
}

/// A URL whose authority starts at byte `start`.
fn redact_url(url: &str, start: usize) -> String {
    let (head, rest) = url.split_at(start);
    // User info is what precedes the last `@` before the query: a password may hold a `/`
    // or an `@` that its writer did not percent-encode, and must not leak in part.
    let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
    let (user_info, rest) = match rest[..query_at].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let user_info = user_info.map_or_else(String::new, |info| match info.split_once(':') {
        Some((user, _)) => format!("{user}:***@"),
        None => format!("{info}@"),
    });
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) => format!("{key}=***"),
                    None => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}{}", query.join("&"), fragment.map(|f| format!("#{f}")).unwrap_or_default())
        }
        None => rest.to_owned(),
    };
    format!("{head}{user_info}{rest}")
}

/// A `key=value key2='quoted value'` connection string.
fn redact_conninfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let key = rest[key_start..eq].trim();
        out.push_str(&rest[..=eq]);
        let after = &rest[eq + 1..];
        let value_len = value_length(after);
        if key.to_ascii_lowercase().ends_with("password") {
            out.push_str("***");
        } else {
            out.push_str(&after[..value_len]);
        }
        rest = &after[value_len..];
    }
    out.push_str(rest);
    out
}

/// The length of a conninfo value at the start of `text`: up to the next whitespace, or a
/// whole single-quoted string (with `\'` escapes).
fn value_length(text: &str) -> usize {
    if let Some(quoted) = text.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => return i + 2,
                _ => escaped = false,
            }
        }
        return text.len();
    }
    text.find(char::is_whitespace).unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn url_passwords_are_hidden_and_the_rest_kept() {
        assert_eq!(redact("postgres://tutorial:secret@127.0.0.1:5432/db"), "postgres://tutorial:***@127.0.0.1:5432/db");
        assert_eq!(redact("redis://:hunter2@10.0.0.5:6379/0"), "redis://:***@10.0.0.5:6379/0");
        assert_eq!(redact("redis://default:p%40ss@cache"), "redis://default:***@cache");
        assert_eq!(redact("http://jwt:s3cret@el:8551"), "http://jwt:***@el:8551");
        assert_eq!(redact("postgres://user@host/db"), "postgres://user@host/db", "no password, nothing hidden");
        assert_eq!(redact("postgres://127.0.0.1/db"), "postgres://127.0.0.1/db");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn a_password_with_an_at_sign_or_a_slash_is_hidden_whole() {
        assert_eq!(redact("postgres://u:p@ss@host/db"), "postgres://u:***@host/db");
        assert_eq!(redact("postgres://u:pa/ss@host/db"), "postgres://u:***@host/db");
    }

    #[test]
    fn query_parameter_values_are_hidden() {
        assert_eq!(
            redact("postgres://u@host/db?password=secret&sslmode=require"),
            "postgres://u@host/db?password=***&sslmode=***"
        );
        assert_eq!(redact("redis://host:6379/?password=pw#frag"), "redis://host:6379/?password=***#frag");
        assert_eq!(redact("postgres://host/db?flag"), "postgres://host/db?flag");
    }

    #[test]
    fn conninfo_passwords_are_hidden() {
        assert_eq!(
            redact("host=db user=tutorial password=secret dbname=tutorial"),
            "host=db user=tutorial password=*** dbname=tutorial"
        );
        assert_eq!(redact("host=db password='with space \\' quote' port=5432"), "host=db password=*** port=5432");
        assert_eq!(redact("sslpassword=x host=db"), "sslpassword=*** host=db");
        assert_eq!(redact("host=db port=5432"), "host=db port=5432");
        assert_eq!(redact("127.0.0.1:6379"), "127.0.0.1:6379", "a bare address has nothing to hide");
    }
}
