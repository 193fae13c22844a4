//! Kernel modules from the initramfs, loaded with `finit_module` in the order `halyard-os` computed
//! from the modules' dependencies (`load.order`).

use std::path::Path;

use crate::say;

/// Load every module named in `dir/load.order`; a module already present is fine.
pub fn load_all(dir: &Path) -> Result<(), String> {
    let order_file = dir.join("load.order");
    let order = std::fs::read_to_string(&order_file).map_err(|e| format!("{}: {e}", order_file.display()))?;
    for name in order.lines().filter(|l| !l.trim().is_empty()) {
        let path = dir.join(name.trim());
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        match rustix::system::finit_module(&file, c"", 0) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => say!("module {name}: {e}"),
        }
    }
    Ok(())
}
