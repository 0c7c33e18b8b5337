//! [`ThinStr`]: an immutable, reference-counted string and a small header in one allocation,
//! behind one pointer (`Arc<str>` is two words). A series' labels are one, held by its
//! catalogue entry.

/// An immutable shared string with a `Copy` header, one pointer wide.
pub(crate) struct ThinStr<H>(triomphe::ThinArc<H, u8>);

impl<H: Copy> ThinStr<H> {
    pub(crate) fn new(header: H, text: &str) -> ThinStr<H> {
        ThinStr(triomphe::ThinArc::from_header_and_slice(header, text.as_bytes()))
    }

    pub(crate) fn header(&self) -> H {
        self.0.header.header
    }

    pub(crate) fn as_str(&self) -> &str {
        // SAFETY: `new` is the only constructor and copies the bytes of a `&str`; they are
        // never mutated (the allocation is shared and read-only).
        unsafe { std::str::from_utf8_unchecked(&self.0.slice) }
    }
}

impl<H> Clone for ThinStr<H> {
    fn clone(&self) -> ThinStr<H> {
        ThinStr(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::ThinStr;

    #[test]
    fn one_pointer_holding_header_and_text() {
        assert_eq!(std::mem::size_of::<ThinStr<(u32, u32)>>(), std::mem::size_of::<usize>());
        let s = ThinStr::new((3u32, 7u32), "a=\"é\"");
        let t = s.clone();
        assert_eq!(t.as_str(), "a=\"é\"");
        assert_eq!(t.header(), (3, 7));
        assert_eq!(ThinStr::new((0u32, 0u32), "").as_str(), "");
    }
}
