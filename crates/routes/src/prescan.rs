//! A first pass over the YAML event stream, before any node is built, that
//! refuses files no routes file looks like but that would hurt the proxy.
//!
//! marked-yaml builds and drops its node tree recursively, and serde's
//! `from_node` recurses too, so a 40 KB file of 20,000 nested `- ` or `[`
//! overflows the stack; and every node costs memory (a 1 MiB
//! `routes: [x,x,…]` took 176 MB of heap). yaml-rust2's parser, which
//! marked-yaml drives, is not recursive: it keeps its state stack on the
//! heap (the `deep_*` tests in this module prove it on a small stack). So
//! this pass pulls its events one at a time and stops at the first place
//! the file goes past a limit.
//! It also finds a second document, which marked-yaml, loading one
//! document, would silently ignore.
//!
//! It must see exactly the events marked-yaml will: the workspace pins
//! yaml-rust2 to the version marked-yaml 0.8 uses, so both share one copy.
//!
//! What this pass cannot bound: yaml-rust2's scanner may read a flow
//! collection that could still turn out to be a key ahead in full before it
//! hands out the opening bracket, so a file that is one flow collection
//! (JSON-style `{"routes": [...]}`) is held as tokens, ~100 bytes each,
//! before the first event, here as in marked-yaml. Only the size of the
//! file bounds that; the caller reading the file should cap it.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, ScanError};

use crate::error::{ConfigError, Location, Problem};

/// The deepest nesting of lists and mappings a routes file may have. A
/// routes file needs 4 (top mapping, `routes` list, route mapping,
/// `upstream` list); 32 leaves room for anything honest while keeping the
/// recursion that builds and reads the tree shallow.
pub const MAX_DEPTH: usize = 32;

/// The most YAML nodes (scalars, lists and mappings) a routes file may
/// have. An honest file is at most 1 MiB (a ConfigMap's limit). A minimal
/// block route, `  - path: /a12345\n    upstream: 10.0.0.1:8080\n`, is 46
/// bytes and 5 nodes (a mapping and four scalars), so 1 MiB holds ~22,800
/// such routes ≈ 114,000 nodes; the same route in flow style,
/// `- {path: /a, upstream: 1.1.1.1:1}\n`, is 35 bytes, ~150,000 nodes per
/// MiB. 250,000 leaves 1.6× headroom over that and still refuses the
/// densest hostile MiB (`[x,x,…]`, two bytes a node, ~524,000 nodes) at
/// half its size.
pub const MAX_NODES: usize = 250_000;

/// yaml-rust2's scanner refuses a 256th nested flow collection with this
/// message (`Scanner::increase_flow_level`, yaml-rust2 0.10.4).
const FLOW_LEVEL_OVERFLOW: &str = "recursion limit exceeded";

/// Checks the text against the limits: `Err` when it goes past one, and
/// nothing may be built from it. `Ok(Some(_))` reports a second document:
/// the first has been checked in full and can still be loaded, so that its
/// own errors are reported along with this one.
///
/// Syntax errors are not reported here: marked-yaml meets the same error at
/// the same place, having built only what this pass allowed, and reports it
/// as it always has.
pub(crate) fn prescan(text: &str) -> Result<Option<ConfigError>, ConfigError> {
    match walk(text.chars()) {
        Ok(second_document) => Ok(second_document),
        Err(Stop::Refused(e)) => Err(e),
        Err(Stop::Syntax(e)) if e.info() == FLOW_LEVEL_OVERFLOW => {
            // The scanner reads nested flow collections ahead before it
            // hands out the first bracket (it might be a key), so on `[[[[…`
            // it fails at level 256 before the parser has emitted a single
            // level. Cut the text there and walk again: at the end of
            // input the scanner lets go of those tokens, and the walk finds
            // the level where MAX_DEPTH was passed.
            match walk(text.chars().take(e.marker().index())) {
                Err(Stop::Refused(refused)) => Err(refused),
                _ => Err(refuse(e.marker(), Problem::TooDeep { limit: MAX_DEPTH })),
            }
        }
        Err(Stop::Syntax(_)) => Ok(None),
    }
}

/// Why a walk ended early.
enum Stop {
    /// Past a limit.
    Refused(ConfigError),
    /// Not valid YAML.
    Syntax(ScanError),
}

/// Walks the events up to the end of the first document; a second one is
/// returned as an error to report, and not walked.
fn walk(chars: impl Iterator<Item = char>) -> Result<Option<ConfigError>, Stop> {
    let mut parser = Parser::new(chars);
    let mut depth = 0usize;
    let mut nodes = 0usize;
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(Stop::Syntax)?;
        match event {
            Event::StreamEnd => return Ok(None),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    // Column 1: a `---` starts its line, and a document with
                    // none (after `...`) is marked at its first `:` or `-`,
                    // not where its line begins.
                    return Ok(Some(ConfigError {
                        location: Some(Location {
                            line: mark.line(),
                            column: 1,
                        }),
                        route: None,
                        problem: Problem::SecondDocument,
                    }));
                }
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                nodes += 1;
                depth += 1;
                if depth > MAX_DEPTH {
                    let problem = Problem::TooDeep { limit: MAX_DEPTH };
                    return Err(Stop::Refused(refuse(&mark, problem)));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::Scalar(..) | Event::Alias(..) => nodes += 1,
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
        }
        if nodes > MAX_NODES {
            let problem = Problem::TooManyNodes { limit: MAX_NODES };
            return Err(Stop::Refused(refuse(&mark, problem)));
        }
    }
}

fn refuse(mark: &Marker, problem: Problem) -> ConfigError {
    ConfigError {
        location: Some(location(mark)),
        route: None,
        problem,
    }
}

/// yaml-rust2 counts columns from 0 (its docs say 1; marked-yaml adds 1
/// too, in `MarkedLoader::marker`).
fn location(mark: &Marker) -> Location {
    Location {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

#[cfg(test)]
mod tests {
    use yaml_rust2::parser::{Event, Parser};

    use super::{prescan, FLOW_LEVEL_OVERFLOW, MAX_DEPTH, MAX_NODES};
    use crate::{load, Problem};

    /// Levels of nesting for the tests that prove nothing recurses: far
    /// more than a 256 KiB stack could hold one frame each.
    const VERY_DEEP: usize = 200_000;

    /// Runs `f` on a thread with a 256 KiB stack, so that a test passes only
    /// if nothing on its path recurses per level of input.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("the test thread panicked")
    }

    /// The one error `load` reports, as `line:column: message`.
    fn only_error(text: &str) -> String {
        match load("d.yaml", text) {
            Ok(_) => panic!("expected an error for {:?}…", &text[..text.len().min(60)]),
            Err(e) => {
                assert_eq!(e.total(), 1, "{e}");
                e.to_string()
            }
        }
    }

    /// Block nesting is refused at the `- ` that goes one level past
    /// MAX_DEPTH: the top mapping is level 1 and the `routes` list level 2,
    /// so the 32nd `- `, at column 63, opens level 33.
    #[test]
    fn deep_block_nesting_is_refused_where_it_passes_the_limit() {
        let text = format!("routes:\n{}", "- ".repeat(20_000));
        let e = only_error(&text);
        assert!(e.starts_with("d.yaml:2:63: "), "{e}");
        assert!(e.contains(&format!("more than {MAX_DEPTH} levels")), "{e}");
    }

    /// Flow nesting likewise: after `routes: ` the k-th `[` (column 8 + k)
    /// opens level k + 1, so level 33 opens at column 40. That holds both
    /// when the scanner gives up at its own limit of 255 open brackets
    /// (the 20,000-deep file) and when the nesting closes before that.
    #[test]
    fn deep_flow_nesting_is_refused_where_it_passes_the_limit() {
        for text in [
            format!("routes: {}", "[".repeat(20_000)),
            format!("routes: {}{}\n", "[".repeat(100), "]".repeat(100)),
            format!("routes: {}", "{a: ".repeat(20_000)),
        ] {
            let e = only_error(&text);
            assert!(e.starts_with("d.yaml:1:"), "{e}");
            assert!(e.contains(&format!("more than {MAX_DEPTH} levels")), "{e}");
        }
        let e = only_error(&format!("routes: {}", "[".repeat(20_000)));
        assert!(e.starts_with("d.yaml:1:40: "), "{e}");
        let e = only_error(&format!("routes: {}{}\n", "[".repeat(100), "]".repeat(100)));
        assert!(e.starts_with("d.yaml:1:40: "), "{e}");
    }

    /// Exactly MAX_DEPTH levels is allowed.
    #[test]
    fn nesting_up_to_the_limit_passes_the_prescan() {
        let levels = MAX_DEPTH - 1; // below the top mapping
        let text = format!("routes: {}{}\n", "[".repeat(levels), "]".repeat(levels));
        assert_eq!(prescan(&text), Ok(None));
    }

    /// yaml-rust2's parser keeps its states on the heap: it walks 200,000
    /// nested block lists on a 256 KiB stack. The prescan relies on this.
    #[test]
    fn deep_block_nesting_does_not_recurse_in_yaml_rust2() {
        let deepest = on_small_stack(|| {
            let text = "- ".repeat(VERY_DEEP);
            let mut parser = Parser::new_from_str(&text);
            let (mut depth, mut deepest) = (0usize, 0usize);
            loop {
                match parser.next_token() {
                    Ok((Event::StreamEnd, _)) => break,
                    Ok((Event::SequenceStart(..), _)) => depth += 1,
                    Ok((Event::SequenceEnd, _)) => depth -= 1,
                    Ok(_) => {}
                    Err(e) => panic!("{e}"),
                }
                deepest = deepest.max(depth);
            }
            deepest
        });
        assert_eq!(deepest, VERY_DEEP);
    }

    /// On 200,000 nested flow lists yaml-rust2's scanner stops at 256 with
    /// the error the prescan recognizes, again without recursing.
    #[test]
    fn deep_flow_nesting_does_not_recurse_in_yaml_rust2() {
        let info = on_small_stack(|| {
            let text = "[".repeat(VERY_DEEP);
            let mut parser = Parser::new_from_str(&text);
            loop {
                match parser.next_token() {
                    Ok((Event::StreamEnd, _)) => return String::from("no error"),
                    Ok(_) => {}
                    Err(e) => return e.info().to_owned(),
                }
            }
        });
        assert_eq!(info, FLOW_LEVEL_OVERFLOW);
    }

    /// The whole of `load`, on 200,000 levels in block and flow form, runs
    /// on a 256 KiB stack and refuses the file.
    #[test]
    fn load_refuses_very_deep_files_without_recursing() {
        let shown = on_small_stack(|| {
            [
                format!("routes:\n{}", "- ".repeat(VERY_DEEP)),
                format!("routes: {}", "[".repeat(VERY_DEEP)),
            ]
            .map(|text| match load("d.yaml", &text) {
                Ok(_) => String::from("accepted"),
                Err(e) => e.to_string(),
            })
        });
        assert!(shown[0].starts_with("d.yaml:2:63: "), "{}", shown[0]);
        assert!(shown[1].starts_with("d.yaml:1:40: "), "{}", shown[1]);
        for s in shown {
            assert!(s.contains(&format!("more than {MAX_DEPTH} levels")), "{s}");
        }
    }

    /// `routes: [x,x,…]`: the top mapping, `routes` and the list are nodes
    /// 1–3, so the i-th `x` (column 10 + 2(i − 1)) is node 3 + i.
    fn scalars(n: usize) -> String {
        let mut text = String::from("routes: [");
        text.push_str(&"x,".repeat(n));
        text.push_str("]\n");
        text
    }

    /// MAX_NODES nodes pass; one more is refused at that node.
    #[test]
    fn node_limit_is_exact() {
        assert_eq!(prescan(&scalars(MAX_NODES - 3)), Ok(None));
        let e = prescan(&scalars(MAX_NODES - 2)).expect_err("one node too many");
        assert_eq!(e.problem, Problem::TooManyNodes { limit: MAX_NODES });
        let column = 10 + 2 * (MAX_NODES - 3);
        assert_eq!(e.location.map(|l| (l.line, l.column)), Some((1, column)));
    }

    /// A 1 MiB file of `x,` (about 524,000 scalars) is refused by the node
    /// limit alone, before marked-yaml builds any node.
    #[test]
    fn a_mebibyte_of_scalars_is_refused_by_the_node_limit() {
        let text = scalars((1 << 20) / 2);
        let e = only_error(&text);
        let column = 10 + 2 * (MAX_NODES - 3);
        assert!(e.starts_with(&format!("d.yaml:1:{column}: ")), "{e}");
        assert!(
            e.contains(&format!("more than {MAX_NODES} YAML values")),
            "{e}"
        );
    }

    /// The limits admit any honest file up to 1 MiB: 1 MiB of the smallest
    /// routes, in block and in flow style, loads.
    #[test]
    fn a_mebibyte_of_small_routes_loads() {
        let block = |i| format!("  - path: /a{i:05}\n    upstream: 10.0.0.1:8080\n");
        let flow = |i| format!("  - {{path: /{i}, upstream: 1.1.1.1:1}}\n");
        for route in [&block as &dyn Fn(usize) -> String, &flow] {
            let mut text = String::from("routes:\n");
            let mut n = 0;
            while text.len() < (1 << 20) - 64 {
                text.push_str(&route(n));
                n += 1;
            }
            match load("d.yaml", &text) {
                Ok(t) => assert_eq!(t.len(), n),
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The prescan reports places as marked-yaml does (yaml-rust2 counts
    /// columns from 0, both add 1), so its errors line up with the rest.
    #[test]
    fn prescan_locations_agree_with_marked_yaml() {
        let text = "routes:\n  - path: /a\n    upstream: [ 'h:1',\n      \"é:2\" ]\n";
        let mut from_events = Vec::new();
        let mut parser = Parser::new_from_str(text);
        while let Ok((event, mark)) = parser.next_token() {
            match event {
                Event::StreamEnd => break,
                Event::Scalar(value, ..) => from_events.push((value, super::location(&mark))),
                _ => {}
            }
        }
        let mut from_nodes = Vec::new();
        let node = marked_yaml::parse_yaml(0, text).expect("valid");
        let mut stack = vec![&node];
        while let Some(n) = stack.pop() {
            match n {
                marked_yaml::Node::Scalar(s) => {
                    let start = s.span().start().expect("span");
                    from_nodes.push((s.as_str().to_owned(), crate::Location::from(start)));
                }
                marked_yaml::Node::Sequence(seq) => stack.extend(seq.iter().rev()),
                marked_yaml::Node::Mapping(map) => {
                    for (k, v) in map.iter().rev() {
                        stack.push(v);
                        let start = k.span().start().expect("span");
                        from_nodes.push((k.as_str().to_owned(), crate::Location::from(start)));
                    }
                }
            }
        }
        from_events.sort();
        from_nodes.sort();
        assert_eq!(from_events, from_nodes);
        assert_eq!(from_events.len(), 6);
    }
}
