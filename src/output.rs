//! What the commands print on standard output. When the reader goes away
//! (`berth check-config | head`), the command ends quietly with the
//! status a shell gives a program its pipe closed on (141), instead of a
//! panic about a broken pipe.

use std::io::Write as _;

/// The status of a command whose output pipe was closed.
const BROKEN_PIPE: i32 = 141;

/// Write `text` to standard output; end the process quietly if nobody
/// reads it any more.
pub(crate) fn write(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(BROKEN_PIPE);
        }
        eprintln!("berth: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// `println!` for the commands' output (see the module).
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the commands' output (see the module).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}
