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
    let (user_info, rest) = split_user_info(rest);
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

/// The user info of a URL after its `scheme://`, and what follows its `@`. A password may
/// hold a `/`, `?`, `#` or `@` its writer did not percent-encode, and must not leak in
/// part: when the text up to the last `@` has a `:`, all of it is user info (a `user:`
/// and a password). Otherwise the user info, if any, ends at the last `@` before the path,
/// query or fragment, so an `@` in a query value is not taken for one.
fn split_user_info(rest: &str) -> (Option<&str>, &str) {
    if let Some(at) = rest.rfind('@')
        && rest[..at].contains(':')
    {
        return (Some(&rest[..at]), &rest[at + 1..]);
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    }
}

/// A `key=value key2='quoted value'` connection string.
fn redact_conninfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        // libpq allows spaces around `=`: `password = secret`.
        let key = rest[..eq].trim_end().rsplit(char::is_whitespace).next().unwrap_or_default();
        let after = &rest[eq + 1..];
        let value = after.trim_start();
        out.push_str(&rest[..eq + 1 + after.len() - value.len()]);
        let value_len = value_length(value);
        if key.to_ascii_lowercase().ends_with("password") {
            out.push_str("***");
        } else {
            out.push_str(&value[..value_len]);
        }
        rest = &value[value_len..];
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
        assert_eq!(redact("postgres://u:pa?ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("redis://:pa#ss@cache:6379"), "redis://:***@cache:6379");
        assert_eq!(redact("postgres://u:p?a=b#c@h/db?sslmode=require"), "postgres://u:***@h/db?sslmode=***");
    }

    #[test]
    fn an_at_sign_in_a_query_value_is_not_taken_for_user_info() {
        assert_eq!(redact("postgres://u@h/db?options=x@y"), "postgres://u@h/db?options=***");
        assert_eq!(redact("postgres://h/db?password=p@w"), "postgres://h/db?password=***");
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
        assert_eq!(redact("host = db password = secret dbname=x"), "host = db password = *** dbname=x");
        assert_eq!(redact("password=  'a b' port=1"), "password=  *** port=1");
        assert_eq!(redact("password =\tsecret"), "password =\t***");
        assert_eq!(redact("host=db port=5432"), "host=db port=5432");
        assert_eq!(redact("127.0.0.1:6379"), "127.0.0.1:6379", "a bare address has nothing to hide");
    }
}
