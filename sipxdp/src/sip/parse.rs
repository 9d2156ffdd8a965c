//! The nom grammar behind [`Message::parse`] and the header-value accessors.
//!
//! Parsing runs in two layers: over bytes to find where the header section ends
//! (the body need not be text), then over that section as UTF-8 text.

use std::borrow::Cow;

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag_no_case, take_till, take_till1, take_while_m_n, take_while1},
    character::complete::{char, digit1, line_ending, not_line_ending, one_of, space0, space1},
    combinator::{all_consuming, eof, map, map_res, peek, recognize, rest, verify},
    multi::{fold_many0, many0, many0_count},
    sequence::{preceded, terminated},
};

use super::{
    message::{Header, Message, ParseError, StartLine},
    names::same_name,
};

/// Parses one datagram; see [`Message::parse`].
pub(super) fn message(datagram: &[u8]) -> Result<Message<'_>, ParseError> {
    let datagram = skip_empty_lines(datagram);
    if datagram.is_empty() {
        return Err(ParseError::Empty);
    }
    let (body, head) = header_section(datagram).map_err(|_| ParseError::UnterminatedHeaders)?;
    let head = str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
    let (after_start, start) = start_line(head)?;
    let (unparsed, fields) =
        many0(field)
            .parse(after_start)
            .map_err(|_| ParseError::InvalidHeader {
                line: line_number(head, after_start),
            })?;
    if !unparsed.is_empty() {
        let line = line_number(head, unparsed);
        return Err(if unparsed.starts_with([' ', '\t']) {
            ParseError::OrphanContinuation { line }
        } else {
            ParseError::InvalidHeader { line }
        });
    }
    let body = framed_body(&fields, body)?;
    Ok(Message {
        start,
        fields,
        body,
    })
}

/// Drops empty lines before the start line: RFC 3261 §7.5 has them ignored, and
/// CRLF keep-alives look like them.
fn skip_empty_lines(input: &[u8]) -> &[u8] {
    let blank: IResult<&[u8], usize> = many0_count(line_ending).parse(input);
    blank.map_or(input, |(rest, _)| rest)
}

/// Splits off the header section (every line up to the first empty one, line
/// ends included) and consumes that empty line; the remaining input is the body.
fn header_section(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let nonempty_line = verify(
        terminated(take_till(|b| b == b'\n'), char('\n')),
        |line: &[u8]| !line.is_empty() && line != b"\r",
    );
    terminated(recognize(many0_count(nonempty_line)), line_ending).parse(input)
}

/// One line without its end (CRLF or bare LF). Control characters other than
/// HTAB are refused, so a bare CR can never act as a line break downstream.
fn line(input: &str) -> IResult<&str, &str> {
    terminated(
        verify(not_line_ending, |line: &str| {
            !line.chars().any(|c| c.is_ascii_control() && c != '\t')
        }),
        line_ending,
    )
    .parse(input)
}

/// RFC 3261 `token`: method names, header names, parameter names.
fn token(input: &str) -> IResult<&str, &str> {
    take_while1(|c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)).parse(input)
}

/// `SIP/2.0`, case-insensitively as RFC 3261 §7.1 allows.
fn version(input: &str) -> IResult<&str, &str> {
    recognize((tag_no_case("SIP/"), digit1, char('.'), digit1)).parse(input)
}

/// The start line, and the text after it.
fn start_line(head: &str) -> Result<(&str, StartLine<'_>), ParseError> {
    let (after, text) = line(head).map_err(|_| ParseError::InvalidStartLine)?;
    let (_, start) = all_consuming(alt((status_line, request_line)))
        .parse(text)
        .map_err(|_| ParseError::InvalidStartLine)?;
    Ok((after, start))
}

/// `SIP-Version SP Status-Code SP Reason-Phrase`; an empty reason may also
/// drop its separator, a common leniency.
fn status_line(input: &str) -> IResult<&str, StartLine<'_>> {
    let status_code = verify(
        map_res(
            take_while_m_n(3, 3, |c: char| c.is_ascii_digit()),
            str::parse::<u16>,
        ),
        |code| (100..=699).contains(code),
    );
    map(
        (
            version,
            char(' '),
            status_code,
            alt((preceded(char(' '), rest), eof)),
        ),
        |(version, _, code, reason)| StartLine::Response {
            version,
            code,
            reason,
        },
    )
    .parse(input)
}

/// `Method SP Request-URI SP SIP-Version`.
fn request_line(input: &str) -> IResult<&str, StartLine<'_>> {
    map(
        (
            token,
            char(' '),
            take_till1(|c| c == ' ' || c == '\t'),
            char(' '),
            version,
        ),
        |(method, _, uri, _, version)| StartLine::Request {
            method,
            uri,
            version,
        },
    )
    .parse(input)
}

/// `name HCOLON value`, followed by any folded continuation lines.
fn field(input: &str) -> IResult<&str, Header<'_>> {
    let (input, (name, _, _, first)) = (token, space0, char(':'), line).parse(input)?;
    let continuation = preceded(peek(one_of(" \t")), line);
    let (input, value) =
        fold_many0(continuation, move || Cow::Borrowed(trim_ws(first)), fold).parse(input)?;
    Ok((input, Header { name, value }))
}

/// Appends a continuation line to a field value: the line break and the
/// whitespace around it become a single SP (RFC 3261 §7.3.1).
fn fold<'a>(value: Cow<'a, str>, continuation: &'a str) -> Cow<'a, str> {
    let part = trim_ws(continuation);
    if part.is_empty() {
        return value;
    }
    if value.is_empty() {
        return Cow::Borrowed(part);
    }
    let mut joined = value.into_owned();
    joined.push(' ');
    joined.push_str(part);
    Cow::Owned(joined)
}

fn trim_ws(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// The 1-based line of `head` on which `rest` (a suffix of it) begins.
fn line_number(head: &str, rest: &str) -> usize {
    let offset = head.len().saturating_sub(rest.len());
    1 + head.bytes().take(offset).filter(|&b| b == b'\n').count()
}

/// The body as Content-Length frames it. Several Content-Length fields must
/// agree: a message that means two things to two parsers is refused.
fn framed_body<'a>(fields: &[Header<'_>], body: &'a [u8]) -> Result<&'a [u8], ParseError> {
    let mut lengths = fields
        .iter()
        .filter(|field| same_name(field.name, "Content-Length"))
        .map(|field| content_length(&field.value));
    let Some(declared) = lengths.next() else {
        return Ok(body);
    };
    let declared = declared?;
    for other in lengths {
        if other? != declared {
            return Err(ParseError::InvalidContentLength);
        }
    }
    body.get(..declared).ok_or(ParseError::BodyTruncated {
        declared,
        available: body.len(),
    })
}

fn content_length(value: &str) -> Result<usize, ParseError> {
    let digits: IResult<&str, &str> = all_consuming(digit1).parse(value);
    digits
        .ok()
        .and_then(|(_, digits)| digits.parse().ok())
        .ok_or(ParseError::InvalidContentLength)
}

/// `CSeq: 1*DIGIT LWS Method`.
pub(super) fn cseq(value: &str) -> Option<(u32, &str)> {
    let parsed: IResult<&str, _> =
        all_consuming((map_res(digit1, str::parse::<u32>), space1, token, space0)).parse(value);
    parsed
        .ok()
        .map(|(_, (number, _, method, _))| (number, method))
}

/// The `branch` parameter of the first via-parm in a Via value.
pub(super) fn via_branch(value: &str) -> Option<&str> {
    let top = split_unquoted(value, ',').next()?;
    split_unquoted(top, ';').skip(1).find_map(|param| {
        let (name, branch) = param.split_once('=')?;
        let branch = trim_ws(branch);
        (trim_ws(name).eq_ignore_ascii_case("branch") && !branch.is_empty()).then_some(branch)
    })
}

/// Splits at an ASCII `separator` except inside quoted strings (where a
/// backslash escapes the next character), so a quoted parameter value cannot
/// fake a boundary.
fn split_unquoted(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut remaining = Some(text);
    std::iter::from_fn(move || {
        let current = remaining?;
        let (mut quoted, mut escaped) = (false, false);
        for (index, c) in current.char_indices() {
            if escaped {
                escaped = false;
            } else if quoted && c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = !quoted;
            } else if c == separator && !quoted {
                remaining = current.get(index + c.len_utf8()..);
                return current.get(..index);
            }
        }
        remaining = None;
        Some(current)
    })
}
