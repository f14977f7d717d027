"""Each arm's search as an Optuna study in `<study-dir>/optuna.db`, for Optuna's own tools.

`optuna.load_study(study_name="seed_cnn/layer_to_layer", storage="sqlite:///<dir>/optuna.db")`,
optuna-dashboard and `optuna.importance` read it. A stored trial holds its params, the values
derived from them that it trained with (user attrs, e.g. `stage_fracs`), its Tune trial id (user
attr `trial_id`, also its MLflow tag), its val_acc per epoch and its state: COMPLETE with the
final val_acc, PRUNED when the scheduler stopped it early (value: its last val_acc), FAIL when it
errored.

The searcher keeps its own study in memory, as Ray's OptunaSearch does, so that Tune saves it with
the experiment state and a resumed search starts from exactly the trials Tune restored; every
change is written through to the stored study, which is rebuilt from the searcher's study when a
search starts and when it is resumed. Passing OptunaSearch a storage instead would keep, after a
resume, the trials that were asked after the last saved experiment state (Optuna cannot delete a
trial): Tune reruns that work under new trial ids, so the storage would count it twice.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch

from trainables.trainable import FINAL_KEY

log = logging.getLogger(__name__)

STORAGE_FILE = "optuna.db"
TRIAL_ID_ATTR = "trial_id"  # user attr: the Tune trial id, also the trial's MLflow tag


def storage_url(study_dir: Path) -> str:
    """The sqlite URL of a study directory's Optuna storage."""
    return f"sqlite:///{Path(study_dir).resolve() / STORAGE_FILE}"


def study_name(arm_name: str, study_index: int | None = None) -> str:
    """`<model>/<label>`, plus `/study<k>` when the spec repeats the study (budget.studies > 1)."""
    return arm_name if study_index is None else f"{arm_name}/study{study_index}"


def has_final(result: dict[str, Any] | None) -> bool:
    """Whether a trial's last result carries fit's final metrics (Tune passes it flattened)."""
    return any(key.split("/")[0] == FINAL_KEY for key in result or {})


@functools.cache
def rdb_storage(url: str) -> optuna.storages.RDBStorage:
    """One storage object per URL in this process (opening one creates the schema: ~0.4 s CPU)."""
    return optuna.storages.RDBStorage(url)


class StoredOptunaSearch(OptunaSearch):
    """OptunaSearch whose study is written through to `storage_url` (None: in memory only) under
    `study_name`, with each trial's state as this study means it (early-stopped: PRUNED)."""

    def __init__(
        self, *args: Any, storage_url: str | None = None, study_name: str = "optuna", **kwargs: Any
    ):
        self.storage_url = storage_url
        self._stored_ids: dict[int, int] = {}  # trial number -> the stored trial's id
        super().__init__(*args, study_name=study_name, **kwargs)

    def _setup_study(self, mode: str | list) -> None:
        super()._setup_study(mode)
        self._replace_stored()

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        config = super().suggest(trial_id)
        if not isinstance(config, dict) or trial_id not in self._ot_trials:
            return config
        trial = self._ot_trials[trial_id]
        trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
        for key, value in config.items():
            if key not in trial.params:  # derived from the params, e.g. stage_fracs
                trial.set_user_attr(key, value)
        if self.storage_url and trial.number not in self._stored_ids:
            self._stored_ids[trial.number] = self._store(self._frozen(trial_id))
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        super().on_trial_result(trial_id, result)
        step = result.get(TRAINING_ITERATION)
        values = self._frozen(trial_id).intermediate_values if trial_id in self._ot_trials else {}
        if step in values:
            self._write(trial_id, "set_trial_intermediate_value", step, values[step])

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """COMPLETE with the final val_acc only for a trial that reported its final metrics; one the
        scheduler stopped early is PRUNED at its last val_acc (OptunaSearch would take that as
        final, and Tune never passed the result the scheduler stopped it on as an epoch)."""
        finished = not error and has_final(result)
        if not finished and not error and TRAINING_ITERATION in (result or {}):
            self.on_trial_result(trial_id, result)  # Optuna prunes at the last reported value
        super().on_trial_complete(trial_id, result if finished else None, error)
        if trial_id not in self._ot_trials:
            return
        frozen = self._frozen(trial_id)
        if frozen.state.is_finished():
            self._write(trial_id, "set_trial_state_values", frozen.state, frozen.values)

    def restore(self, checkpoint_path: str) -> None:
        """Resume: the stored study becomes the saved one, which holds the trials Tune restored."""
        super().restore(checkpoint_path)
        self._replace_stored()

    def _frozen(self, trial_id: str) -> FrozenTrial:
        return self._ot_study.get_trials(deepcopy=False)[self._ot_trials[trial_id].number]

    def _replace_stored(self) -> None:
        """Make the stored study a copy of the searcher's: every trial asked so far, in order."""
        if not self.storage_url:
            return
        storage = rdb_storage(self.storage_url)
        with contextlib.suppress(KeyError):  # KeyError: a new study
            storage.delete_study(storage.get_study_id_from_name(self._study_name))
        storage.create_new_study(self._ot_study.directions, self._study_name)
        self._stored_ids = {
            trial.number: self._store(trial)
            for trial in self._ot_study.get_trials(deepcopy=False)
            if trial.state != TrialState.WAITING  # enqueued (the defaults), not asked yet
        }

    def _store(self, trial: FrozenTrial) -> int:
        storage = rdb_storage(self.storage_url)
        study_id = storage.get_study_id_from_name(self._study_name)
        return storage.create_new_trial(study_id, template_trial=trial)

    def _write(self, trial_id: str, method: str, *args: Any) -> None:
        """Call the storage's `method` on the stored copy of Tune's `trial_id`, if there is one."""
        stored = self._stored_ids.get(self._ot_trials[trial_id].number)
        if stored is None:
            return
        try:
            getattr(rdb_storage(self.storage_url), method)(stored, *args)
        except RuntimeError as err:  # e.g. a trial that had already finished
            log.warning("Optuna storage: %s of trial %s: %s", method, trial_id, err)
