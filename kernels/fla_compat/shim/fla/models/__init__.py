"""fla.models: only `fla.models.utils.Cache` is provided; FLA's model classes are not."""
