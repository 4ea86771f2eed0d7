"""fla.layers: only `fla.layers.utils` is provided; FLA's layer classes are not."""
