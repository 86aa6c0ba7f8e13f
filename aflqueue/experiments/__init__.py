"""Experiments on top of the pipeline, each a list of resumable jobs (:mod:`.runner`): the
validation grid (:mod:`.grid`), closed forms vs simulation (:mod:`.closed_forms`), the
approximation for general service vs simulation (:mod:`.approx`) and server algorithms compared
at equal time (:mod:`.comparison`); their reports in :mod:`.report`."""
