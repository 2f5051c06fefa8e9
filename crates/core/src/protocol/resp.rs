//! The little of RESP2 ironlock needs: commands out, replies in, replies possibly cut anywhere.

/// One reply from Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    /// `None` is RESP's null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None` is RESP's null array.
    Array(Option<Vec<Reply>>),
}

/// redis-rs's connections answer in its own type. Converting it, instead of decoding both types,
/// keeps one decoder per script (see [`crate::protocol::script_reply`]); a script's reply is a few
/// values per request, so the conversion costs little next to the round trip that brought it.
impl From<redis::Value> for Reply {
    fn from(value: redis::Value) -> Self {
        match value {
            redis::Value::Nil => Reply::Bulk(None),
            redis::Value::Int(number) => Reply::Int(number),
            redis::Value::BulkString(bytes) => Reply::Bulk(Some(bytes)),
            redis::Value::Array(values) => {
                Reply::Array(Some(values.into_iter().map(Reply::from).collect()))
            }
            redis::Value::SimpleString(text) => Reply::Simple(text),
            redis::Value::Okay => Reply::Simple("OK".into()),
            redis::Value::ServerError(error) => Reply::Error(match error.details() {
                Some(details) => format!("{} {details}", error.code()),
                None => error.code().to_owned(),
            }),
            // RESP3 only: the connections speak RESP2, and no script answers these.
            other => Reply::Error(format!("unexpected answer {other:?}")),
        }
    }
}

/// Appends one command: an array of bulk strings.
pub fn encode<I, A>(out: &mut Vec<u8>, args: I)
where
    I: IntoIterator<Item = A>,
    I::IntoIter: ExactSizeIterator,
    A: AsRef<[u8]>,
{
    let args = args.into_iter();
    header(out, b'*', args.len());
    for arg in args {
        let arg = arg.as_ref();
        header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn header(out: &mut Vec<u8>, kind: u8, mut len: usize) {
    out.push(kind);
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (len % 10) as u8;
        len /= 10;
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
    out.extend_from_slice(b"\r\n");
}

/// Why the input cannot be read as RESP; the connection is beyond repair then.
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Reads the reply starting at `input[0]`: `Ok(None)` while it is incomplete, else the reply and
/// how many bytes it took.
pub fn parse(input: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut at = 0;
    Ok(parse_at(input, &mut at)?.map(|reply| (reply, at)))
}

fn parse_at(input: &[u8], at: &mut usize) -> Result<Option<Reply>, ProtocolError> {
    let Some(line) = line(input, *at) else {
        return Ok(None);
    };
    let kind = input[*at];
    let text = &input[*at + 1..line];
    let after_line = line + 2;
    let reply = match kind {
        b'+' => Reply::Simple(String::from_utf8_lossy(text).into_owned()),
        b'-' => Reply::Error(String::from_utf8_lossy(text).into_owned()),
        b':' => Reply::Int(number(text)?),
        b'$' => {
            let len = number(text)?;
            if len < 0 {
                Reply::Bulk(None)
            } else {
                let end = after_line + len as usize;
                if input.len() < end + 2 {
                    return Ok(None);
                }
                *at = end + 2;
                return Ok(Some(Reply::Bulk(Some(input[after_line..end].to_vec()))));
            }
        }
        b'*' => {
            let len = number(text)?;
            if len < 0 {
                Reply::Array(None)
            } else {
                let mut items = Vec::with_capacity(len.min(1024) as usize);
                let mut item_at = after_line;
                for _ in 0..len {
                    match parse_at(input, &mut item_at)? {
                        Some(item) => items.push(item),
                        None => return Ok(None),
                    }
                }
                *at = item_at;
                return Ok(Some(Reply::Array(Some(items))));
            }
        }
        other => {
            return Err(ProtocolError(format!(
                "unexpected byte {other:#04x} at the start of a reply"
            )))
        }
    };
    *at = after_line;
    Ok(Some(reply))
}

/// The index of the `\r` ending the line that starts at `from`, once the whole `\r\n` is there.
fn line(input: &[u8], from: usize) -> Option<usize> {
    let rest = input.get(from..)?;
    let cr = rest.windows(2).position(|pair| pair == b"\r\n")?;
    Some(from + cr)
}

fn number(text: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| ProtocolError(format!("not a number: {:?}", String::from_utf8_lossy(text))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_command_as_an_array_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, ["SET", "k", ""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn reads_every_kind_of_reply() {
        let input = b"*5\r\n+OK\r\n-NOSCRIPT no\r\n:-42\r\n$2\r\nab\r\n$-1\r\n";
        let (reply, used) = parse(input).unwrap().unwrap();
        assert_eq!(used, input.len());
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Simple("OK".into()),
                Reply::Error("NOSCRIPT no".into()),
                Reply::Int(-42),
                Reply::Bulk(Some(b"ab".to_vec())),
                Reply::Bulk(None),
            ]))
        );
        assert_eq!(parse(b"*-1\r\n").unwrap(), Some((Reply::Array(None), 5)));
    }

    #[test]
    fn waits_for_the_rest_of_a_reply_cut_anywhere() {
        let input = b"*2\r\n$5\r\nhello\r\n:7\r\n:1\r\n";
        let first_len = input.len() - 4;
        for cut in 0..first_len {
            assert_eq!(parse(&input[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (_, used) = parse(input).unwrap().unwrap();
        assert_eq!(used, first_len);
        assert_eq!(parse(&input[used..]).unwrap(), Some((Reply::Int(1), 4)));
    }

    #[test]
    fn a_bulk_string_may_hold_crlf() {
        let (reply, _) = parse(b"$4\r\na\r\nb\r\n").unwrap().unwrap();
        assert_eq!(reply, Reply::Bulk(Some(b"a\r\nb".to_vec())));
    }

    #[test]
    fn reads_redis_rs_values_as_replies() {
        let value = redis::Value::Array(vec![
            redis::Value::Int(1),
            redis::Value::BulkString(b"ab".to_vec()),
            redis::Value::Nil,
            redis::Value::Okay,
        ]);
        assert_eq!(
            Reply::from(value),
            Reply::Array(Some(vec![
                Reply::Int(1),
                Reply::Bulk(Some(b"ab".to_vec())),
                Reply::Bulk(None),
                Reply::Simple("OK".into()),
            ]))
        );
    }

    #[test]
    fn refuses_what_is_not_resp() {
        assert!(parse(b"HTTP/1.1 400\r\n").is_err());
        assert!(parse(b":x\r\n").is_err());
    }
}
