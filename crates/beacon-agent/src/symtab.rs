//! Function names for instruction addresses of the running executable, from its ELF symbol table.
//!
//! Why not the `backtrace` crate's resolver: it parses the binary's DWARF, which for a large server
//! (tens of MB of line tables) allocates tens of MB per resolution — measured +58 MiB resident after
//! one error report in `beacon-bench agent` — and that memory stays with the host. This reads the
//! symbol table in 64 KiB pieces with `pread`, keeps nothing, and costs a few milliseconds per report.
//! It gives function names (demangled, without hash), not files and lines; `errors.resolve_lines =
//! true` switches to the DWARF resolver for those, at the memory cost above. Addresses outside the
//! executable (shared libraries) and stripped binaries give no name.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// The executable's mappings: (start, end, file offset), from `/proc/self/maps`.
fn exe_mappings() -> Option<Vec<(u64, u64, u64)>> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let exe = exe.to_string_lossy();
    let exe = exe.trim_end_matches(" (deleted)");
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let mut out = Vec::new();
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let mut parts = line.splitn(6, char::is_whitespace);
        let (Some(range), Some(_), Some(offset), Some(_), Some(_), Some(path)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            continue;
        };
        if path.trim().trim_end_matches(" (deleted)") != exe {
            continue;
        }
        let (start, end) = range.split_once('-')?;
        out.push((
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(end, 16).ok()?,
            u64::from_str_radix(offset, 16).ok()?,
        ));
    }
    (!out.is_empty()).then_some(out)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn read_at(f: &File, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

/// Demangled function names for `ips` (return addresses: looked up at `ip - 1`), `None` where the
/// address is not in the executable or no function symbol covers it.
pub(crate) fn resolve(ips: &[u64]) -> Vec<Option<String>> {
    resolve_inner(ips).unwrap_or_else(|| vec![None; ips.len()])
}

fn resolve_inner(ips: &[u64]) -> Option<Vec<Option<String>>> {
    let maps = exe_mappings()?;
    let f = File::open("/proc/self/exe").ok()?;
    let eh = read_at(&f, 0, 64)?;
    // ELF, 64-bit, little-endian only.
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None;
    }
    let (phoff, shoff) = (u64_at(&eh, 32), u64_at(&eh, 40));
    let (phentsize, phnum) = (u16_at(&eh, 54) as usize, u16_at(&eh, 56) as usize);
    let (shentsize, shnum) = (u16_at(&eh, 58) as usize, u16_at(&eh, 60) as usize);
    if phentsize < 56 || shentsize < 64 || phnum > 4096 || shnum > 65535 {
        return None;
    }
    let ph = read_at(&f, phoff, phentsize * phnum)?;
    // PT_LOAD segments: (file offset, file size, virtual address).
    let loads: Vec<(u64, u64, u64)> = (0..phnum)
        .map(|i| &ph[i * phentsize..])
        .filter(|p| u32_at(p, 0) == 1)
        .map(|p| (u64_at(p, 8), u64_at(p, 32), u64_at(p, 16)))
        .collect();
    // Each address → the symbol-table address space (its vaddr in the file).
    let vaddr = |ip: u64| -> Option<u64> {
        let (start, _, off) = maps.iter().find(|(s, e, _)| (*s..*e).contains(&ip))?;
        let file_off = ip - start + off;
        let (p_off, _, p_vaddr) = loads
            .iter()
            .find(|(o, size, _)| (*o..o + size).contains(&file_off))?;
        Some(file_off - p_off + p_vaddr)
    };
    let targets: Vec<Option<u64>> = ips.iter().map(|&ip| vaddr(ip.saturating_sub(1))).collect();
    if targets.iter().all(Option::is_none) {
        return None;
    }
    let mut sorted: Vec<(u64, usize)> = targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.map(|t| (t, i)))
        .collect();
    sorted.sort_unstable();

    let sh = read_at(&f, shoff, shentsize * shnum)?;
    let section = |i: usize| -> (u32, u64, u64, u32) {
        let s = &sh[i * shentsize..];
        // type, offset, size, link
        (u32_at(s, 4), u64_at(s, 24), u64_at(s, 32), u32_at(s, 40))
    };
    // The full symbol table (SHT_SYMTAB) when present, else the dynamic one (SHT_DYNSYM).
    let symtab = (0..shnum)
        .find(|&i| section(i).0 == 2)
        .or_else(|| (0..shnum).find(|&i| section(i).0 == 11))?;
    let (_, sym_off, sym_size, link) = section(symtab);
    let (_, str_off, str_size, _) = section(link as usize);

    // One pass over the symbols, 64 KiB at a time: the covering function of each target.
    const SYM: usize = 24;
    const CHUNK: usize = SYM * 2730;
    let mut best: Vec<Option<(u64, u32)>> = vec![None; ips.len()];
    let mut pos = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while pos + SYM as u64 <= sym_size {
        let len = CHUNK.min((sym_size - pos) as usize / SYM * SYM);
        let chunk = &mut buf[..len];
        f.read_exact_at(chunk, sym_off + pos).ok()?;
        for s in chunk.chunks_exact(SYM) {
            let (name, info) = (u32_at(s, 0), s[4]);
            let (value, size) = (u64_at(s, 8), u64_at(s, 16));
            if info & 0xf != 2 || value == 0 || name == 0 {
                continue; // not a function
            }
            let end = value + size.max(1);
            let first = sorted.partition_point(|(t, _)| *t < value);
            for &(_, i) in sorted[first..].iter().take_while(|(t, _)| *t < end) {
                // The innermost (highest-starting) covering symbol wins.
                if best[i].is_none_or(|(v, _)| value > v) {
                    best[i] = Some((value, name));
                }
            }
        }
        pos += len as u64;
    }

    let name_at = |offset: u32| -> Option<String> {
        if offset as u64 >= str_size {
            return None;
        }
        let mut raw = Vec::new();
        let mut at = str_off + offset as u64;
        let mut piece = [0u8; 256];
        while raw.len() < 4096 {
            let n = f.read_at(&mut piece, at).ok()?;
            if n == 0 {
                break;
            }
            match piece[..n].iter().position(|&b| b == 0) {
                Some(end) => {
                    raw.extend_from_slice(&piece[..end]);
                    break;
                }
                None => raw.extend_from_slice(&piece[..n]),
            }
            at += n as u64;
        }
        let raw = String::from_utf8_lossy(&raw);
        Some(format!("{:#}", rustc_demangle::demangle(&raw)))
    };
    Some(
        best.into_iter()
            .map(|b| b.and_then(|(_, name)| name_at(name)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_known_function() -> Vec<u64> {
        let mut ips = Vec::new();
        backtrace::trace(|f| {
            ips.push(f.ip() as u64);
            true
        });
        ips
    }

    #[test]
    fn names_the_functions_of_this_binary() {
        let ips = a_known_function();
        let names = resolve(&ips);
        assert_eq!(names.len(), ips.len());
        assert!(
            names
                .iter()
                .flatten()
                .any(|n| n.ends_with("symtab::tests::a_known_function")),
            "{names:?}"
        );
        assert!(
            names
                .iter()
                .flatten()
                .any(|n| n.ends_with("symtab::tests::names_the_functions_of_this_binary")),
            "{names:?}"
        );
        assert_eq!(resolve(&[1, 2]), [None, None]);
    }
}
