"""Tests run with float64 enabled; float32 cases ask for it explicitly (dtype="float32").

One persistent compilation cache serves the whole session and the commands it starts (through
``JAXRECON_CACHE_DIR``): ``.pytest_cache/jax`` in the repository, so a repeated local run finds
its programs compiled; a clean clone (CI) starts with an empty one.

Test tiers (see pyproject.toml): the tests named in :data:`E2E` are marked ``e2e`` here, and so is
every ``slow`` test, so ``python3 -m pytest -q -m "not e2e"`` is the fast tier.
"""

import os
from pathlib import Path

import jax
import pytest

os.environ.setdefault("JAXRECON_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"))

from jaxrecon.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.key(0)


#: The end-to-end tests, by module: ALL of a module's tests, or the names of the e2e ones (a
#: parametrized test by its function name, or one case of it as ``name[id]``). End-to-end: it
#: starts a subprocess (a ``jaxrecon`` command, several processes, a benchmark or experiment
#: script, another instruction set), runs a ``jaxrecon`` command through its ``main``, executes a
#: notebook, or takes 3 s or more (whole attacks, sweeps, large compiled checks: in any of three
#: --durations runs of the fast tier on the loaded 2-core machine; the fast tier keeps the basic
#: reconstruction of tests/test_reconstruct.py).
#: Every test module is either here or in FAST_MODULES (tests/test_release.py checks both lists
#: against the files).
ALL = "all"
E2E = {
    "test_architecture": (
        "test_a_new_sweep_axis_is_a_config_field_read_by_the_trial",
    ),
    "test_auto": (
        "test_a_sweep_records_what_auto_ran_and_takes_method_options",
        "test_auto_reconstructs_relu_and_tanh_and_records_the_choice",
        "test_escalation_gives_a_fresh_start_and_the_best_iterate_survives",
        "test_a_given_start_is_not_escalated_away",
    ),
    "test_behaviour": (
        "test_exact_cases_hold_on_other_instruction_sets",
        "test_every_case_holds_on_other_instruction_sets",
        "test_case_gives_the_recorded_behaviour[adam-lm-split/dense]",
        "test_case_gives_the_recorded_behaviour[adam-lm/streamed]",
        "test_case_gives_the_recorded_behaviour[adam/streamed]",
        "test_case_gives_the_recorded_behaviour[sweep/first-order]",
        "test_case_gives_the_recorded_behaviour[global/dense]",
    ),
    "test_cache": (
        "test_a_repeated_command_compiles_nothing",
    ),
    "test_cli": (
        "test_reconstruct_end_to_end",
        "test_bad_input_exits_2_with_one_line",
        "test_out_that_is_a_file",
        "test_console_script_version_and_help",
        "test_scale_flags_bad_input",
        "test_sweep_flags_generated_keep_the_old_spellings",
        "test_sweep_list_and_dotted_flags",
        "test_sweep_flags_override_a_config_file",
        "test_sweep_two_ways_of_p_is_one_line_error",
    ),
    "test_defences": (
        "test_noisy_attack_stops_at_floor_or_plateau",
        "test_reconstruct_summary_records_the_release",
    ),
    "test_distributed": (
        "test_cli_refuses_a_wrong_process_id",
        "test_two_processes_equal_one",
        "test_killed_process_then_rerun_completes_without_duplicates",
        "test_a_taken_port_is_one_line_for_every_process",
        "test_a_missing_process_is_named_after_init_timeout_and_the_coordinator_listens_on_loopback",
        "test_a_process_id_given_twice_ends_the_job_in_seconds",
        "test_attack_over_two_processes_of_two_devices_equals_one_device",
        "test_a_unit_cut_by_seeds_gives_those_seeds_rows_of_the_full_point",
    ),
    "test_docs": (
        "test_docs_build_strictly",
    ),
    "test_fit_metrics": (
        "test_fit_equals_pinv[None-7]",
    ),
    "test_hardening_cli": (
        "test_resume_from_the_cli_warns_in_one_line_and_finishes",
        "test_a_foreign_rejected_rows_file_is_not_overwritten",
        "test_results_file_of_garbage_is_refused_and_a_cut_header_is_not",
        "test_no_threshold_reached_plots_and_says_so",
        "test_sweep_name_escape_writes_nothing",
        "test_reconstruct_messages_name_the_flag_typed",
        "test_sweep_messages_name_the_flag_typed",
        "test_out_empty_is_an_error_for_every_command",
        "test_reconstruct_refuses_an_earlier_run",
        "test_reconstruct_overwrite_replaces_the_earlier_run",
        "test_reconstruct_refuses_a_sweep_directory",
        "test_sweep_refuses_a_reconstruct_run_and_leaves_no_lock",
        "test_refused_sweep_leaves_no_lock_and_no_new_directory",
        "test_cli_names_the_output_directory_of_an_error_without_a_file",
        "test_config_calling_sys_exit_is_one_line",
    ),
    "test_identifiability": (
        "test_isolation_dips_at_the_square_system",
        "test_nullity_is_the_counting_prediction[0.5]",
    ),
    "test_image_plots": (
        "test_cli_data_flags",
    ),
    "test_labels": (
        "test_solved_runs_stay_solved_and_the_table_shows_loss_f64",
        "test_refused_before_the_attack_with_one_line",
    ),
    "test_methods": (
        "test_default_method_reaches_exact_reconstruction",
        "test_a_stall_takes_the_first_action_that_applies_and_restarts_the_first_phase",
        "test_row_repair_fixes_several_wrong_rows_at_once",
        "test_closed_form_gauss_newton_equals_autodiff[relu-None]",
        "test_below_threshold_the_default_does_not_pretend",
        "test_closed_form_gauss_newton_equals_autodiff[relu_tanh-None]",
    ),
    "test_network": (
        "test_cli_two_layer_and_resnet",
        "test_cli_network_errors",
        "test_matrix_free_ops_equal_materialised_jacobian[all-matrix_free]",
    ),
    "test_notebook": ALL,
    "test_numerics": (
        "test_attack_on_huge_theta_runs_as_on_theta",
        "test_a_seed_does_not_depend_on_the_seeds_beside_it",
        "test_zero_theta_is_degenerate_with_a_warning",
        "test_loss_is_scale_invariant_in_float32[residual-32]",
        "test_run_reconstruction_reports_degenerate_seeds",
        "test_span_residuals_match_a_float64_projection[37-True-float32-1e-12]",
        "test_span_residuals_match_a_float64_projection[None-False-float32-2e-07]",
        "test_span_residuals_match_a_float64_projection[37-True-float64-1e-13]",
        "test_span_residuals_match_a_float64_projection[37-False-float32-2e-07]",
        "test_p_at_most_n_is_degenerate_with_loss_zero[4-p=4 = m=4]",
    ),
    "test_outcomes": (
        "test_partial_recovery_counts_recomputed_from_saved_arrays",
    ),
    "test_plotting": (
        "test_plot_command_reads_results_and_writes_thresholds",
        "test_plot_bad_input",
        "test_figures_are_written_and_non_empty",
        "test_one_curve_writes_no_finite_size_figure",
    ),
    "test_population": (
        "test_population_results_do_not_depend_on_the_chunks",
        "test_population_reaches_zeros_that_single_starts_miss",
        "test_below_the_threshold_zeros_are_found_but_not_the_training_set",
        "test_sweep_planted_axis_keeps_old_hashes_and_starts_near_the_data",
        "test_a_start_at_the_training_set_stops_at_once",
    ),
    "test_precision": (
        "test_budget_returns_the_best_iterate",
        "test_precision_stop_keeps_the_exact_rows",
        "test_stall_at_a_tiny_loss_stops",
    ),
    "test_preflight": ALL,
    "test_readme": (
        "test_readme_numbers_match_the_committed_results",
        "test_python_snippets_run",
    ),
    "test_reconstruct": (
        "test_stopped_seed_no_longer_changes",
    ),
    "test_release": (
        "test_jaxrecon_imports_without_flax_and_a_network_model_names_the_extra",
    ),
    "test_robustness_bench": (
        "test_smoke_run_writes_the_csv_and_table_and_resumes",
        "test_unknown_rows_and_methods_are_one_line_errors",
    ),
    "test_saving": (
        "test_results_saved_by_default_in_runs",
        "test_no_save",
        "test_files_get_the_umask_mode",
    ),
    "test_scale": (
        "test_sharded_equals_single_device_on_four_cpu_devices",
        "test_sharded_closed_form_gauss_newton_equals_dense_on_four_cpu_devices",
    ),
    "test_signals": (
        "test_sigint_at_any_moment_never_crashes",
        "test_sigterm_mid_run_saves_per_seed_statuses",
        "test_two_copies_of_one_sigterm_stop_once_and_save",
    ),
    "test_split": (
        "test_split_variants_benchmark_resumes_and_tabulates",
        "test_split_start_end_to_end_is_exact_and_no_worse_than_random",
        "test_even_closed_form_gauss_newton_equals_autodiff[None]",
        "test_split_start_in_the_chunked_driver",
        "test_signs_recovered_from_the_linear_part[10-15]",
        "test_even_closed_form_gauss_newton_equals_autodiff[168]",
        "test_no_copy_of_V",
        "test_even_closed_form_value_and_gradient_equal_autodiff",
        "test_even_features_products_and_the_even_part_of_theta[relu]",
        "test_signs_recovered_from_the_linear_part[10-19]",
        "test_split_rows_and_the_prefix_target",
    ),
    "test_split_streamed": (
        "test_streamed_split_over_sharded_blocks",
        "test_adam_lm_split_on_a_streamed_map_reaches_the_training_set",
        "test_streamed_even_products_do_not_store_V",
        "test_streamed_even_features_equal_the_stored[float32-0.0002-gelu-64]",
    ),
    "test_start": (
        "test_pursuit_start_no_worse_than_random_on_small_case",
    ),
    "test_sweep": (
        "test_sigkill_mid_sweep_then_resume_equals_uninterrupted",
        "test_bad_input_exits_2",
        "test_bad_config_files_exit_2",
        "test_out_with_other_config_refused_by_cli",
        "test_second_writer_refused_while_a_sweep_holds_the_lock",
        "test_oversized_grid_exits_2_without_a_directory",
        "test_a_seed_row_does_not_depend_on_the_number_of_seeds",
        "test_plot_reads_a_directory_while_a_sweep_holds_its_lock",
    ),
    "test_sweep_networks": (
        "test_head_only_sweep_is_in_the_span_and_recovers_above_the_threshold",
        "test_all_layer_sweep_stops_at_its_floor_and_resumes",
    ),
    "test_theory": (
        "test_main_json",
        "test_main_text_and_errors",
    ),
    "test_training": (
        "test_run_prints_and_records_loss_at_truth_and_the_floor",
        "test_homogeneous_nets_train_on_unprojected_images_with_the_same_span",
    ),
}
#: The modules with no end-to-end test.
FAST_MODULES = (
    "test_chunk_time", "test_config", "test_data_loaders", "test_experiments_sizes", "test_features",
    "test_figure_labels", "test_lm_cg", "test_loss", "test_thresholds", "test_untrusted_files",
    "test_validation",
)


def is_e2e(module: str, name: str, function: str = "") -> bool:
    """Whether the test ``name`` (``test_x`` or ``test_x[id]``; ``function`` the function's name
    of a parametrized one) of ``module`` (``test_foo``) is end-to-end."""
    listed = E2E.get(module, ())
    return listed == ALL or name in listed or function in listed


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if getattr(item, "module", None) else ""
        function = getattr(item, "originalname", None) or item.name
        if item.get_closest_marker("slow") is not None or is_e2e(module, item.name, function):
            item.add_marker(pytest.mark.e2e)
