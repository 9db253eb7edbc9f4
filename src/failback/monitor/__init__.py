"""The monitor: health history, failure detection, policies, automatic runs, fencing
on sight."""
