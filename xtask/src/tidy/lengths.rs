//! Tidy's length rules: one concept a file, functions a reader can hold. Files and
//! functions over the limits today are listed with their length; the lists only shrink.

/// The most lines a source file may have (tests aside): one concept a file.
pub(crate) const MAX_FILE_LINES: usize = 600;

/// Source files still over [`MAX_FILE_LINES`], each with the length it may not exceed.
/// The list only shrinks: a listed file that grows fails, one that shrinks must lower its
/// entry, and one back under the limit must leave the list.
pub(crate) const LONG_FILES: &[(&str, usize)] = &[];

/// Items (files, functions) over `most` lines that `allowed` (named `list` in messages)
/// does not allow, and entries of it that must shrink or go. `lengths`: each item's name
/// and line count.
pub(crate) fn check_lengths(
    lengths: &[(String, usize)],
    allowed: &[(&str, usize)],
    most: usize,
    list: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (item, lines) in lengths {
        let entry = allowed.iter().find(|(name, _)| name == item).map(|(_, limit)| *limit);
        match entry {
            None if *lines > most => {
                problems.push(format!("{item}: {lines} lines, over {most}: split it by concern"))
            }
            None => {}
            Some(_) if *lines <= most => problems.push(format!(
                "{item}: {lines} lines, within {most} now: remove it from {list} in \
                 xtask/src/tidy/lengths.rs"
            )),
            Some(limit) if *lines > limit => problems.push(format!(
                "{item}: {lines} lines, more than the {limit} {list} allows it: split it by \
                 concern rather than grow it"
            )),
            Some(limit) if *lines < limit => problems.push(format!(
                "{item}: {lines} lines, fewer than its {limit} in {list}: lower the entry in \
                 xtask/src/tidy/lengths.rs (the list only shrinks)"
            )),
            Some(_) => {}
        }
    }
    for (name, _) in allowed {
        if !lengths.iter().any(|(item, _)| item == name) {
            problems.push(format!("{list} names {name}, which is gone: remove the entry"));
        }
    }
    problems
}

/// The most lines a function may have, from its signature to its closing brace.
pub(crate) const MAX_FN_LINES: usize = 80;

/// Functions still over [`MAX_FN_LINES`] (as `file: fn name`), each with the length it may
/// not exceed; like [`LONG_FILES`], the list only shrinks.
pub(crate) const LONG_FUNCTIONS: &[(&str, usize)] = &[];

/// The functions (free, associated, and trait methods with a body) of a source file and
/// their lengths in lines, from the signature (doc comments and attributes aside) to the
/// closing brace; `#[cfg(test)]` modules are left out.
pub(crate) fn function_lengths(text: &str) -> anyhow::Result<Vec<(String, usize)>> {
    use syn::visit::Visit;

    struct Lengths(Vec<(String, usize)>);
    impl Lengths {
        fn record(&mut self, signature: &syn::Signature, block: &syn::Block) {
            let first = signature.fn_token.span.start().line;
            let last = block.brace_token.span.close().end().line;
            self.0.push((signature.ident.to_string(), last.saturating_sub(first) + 1));
        }
    }
    impl<'ast> Visit<'ast> for Lengths {
        fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
            self.record(&item.sig, &item.block);
            syn::visit::visit_item_fn(self, item);
        }
        fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
            self.record(&item.sig, &item.block);
            syn::visit::visit_impl_item_fn(self, item);
        }
        fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
            if let Some(block) = &item.default {
                self.record(&item.sig, block);
            }
            syn::visit::visit_trait_item_fn(self, item);
        }
        fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
            let test_only = item.attrs.iter().any(|attr| {
                attr.path().is_ident("cfg")
                    && attr.parse_args::<syn::Ident>().is_ok_and(|ident| ident == "test")
            });
            if !test_only {
                syn::visit::visit_item_mod(self, item);
            }
        }
    }
    let file = syn::parse_file(text)?;
    let mut lengths = Lengths(Vec::new());
    lengths.visit_file(&file);
    Ok(lengths.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_files_are_refused_unless_listed_and_the_list_only_shrinks() {
        let lengths: Vec<(String, usize)> = [
            ("a.rs", 600),
            ("b.rs", 601),
            ("c.rs", 900),
            ("d.rs", 880),
            ("e.rs", 700),
            ("f.rs", 500),
        ]
        .iter()
        .map(|(file, lines)| ((*file).to_owned(), *lines))
        .collect();
        let allowed = [("c.rs", 890), ("d.rs", 890), ("e.rs", 700), ("f.rs", 650), ("g.rs", 700)];
        assert_eq!(
            check_lengths(&lengths, &allowed, MAX_FILE_LINES, "LONG_FILES"),
            [
                "b.rs: 601 lines, over 600: split it by concern",
                "c.rs: 900 lines, more than the 890 LONG_FILES allows it: split it by concern \
                 rather than grow it",
                "d.rs: 880 lines, fewer than its 890 in LONG_FILES: lower the entry in \
                 xtask/src/tidy/lengths.rs (the list only shrinks)",
                "f.rs: 500 lines, within 600 now: remove it from LONG_FILES in \
                 xtask/src/tidy/lengths.rs",
                "LONG_FILES names g.rs, which is gone: remove the entry",
            ]
        );
    }

    #[test]
    fn function_lengths_run_from_signature_to_closing_brace() {
        let text = "/// Doc.\n#[inline]\nfn one() {}\n\nstruct S;\nimpl S {\n    pub fn two(\n        &self,\n    ) {\n        let _ = 1;\n    }\n}\ntrait T {\n    fn three() {\n    }\n    fn bare();\n}\n#[cfg(test)]\nmod tests {\n    fn skipped() {}\n}\n";
        assert_eq!(
            function_lengths(text).unwrap(),
            [("one".to_owned(), 1), ("two".to_owned(), 5), ("three".to_owned(), 2)]
        );
        assert!(function_lengths("fn broken( {").is_err());
    }
}
