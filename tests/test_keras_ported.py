"""Keras's own tests of its regularization layers, ported to fastdrop.keras.

Sources (keras-team/keras, as installed: keras 3.15.1,
``keras/src/layers/regularization/``):

- ``dropout_test.py`` (``DropoutTest``);
- ``spatial_dropout_test.py`` (``SpatialDropoutTest``);
- ``alpha_dropout_test.py`` (``AlphaDropoutTest``);
- ``gaussian_dropout_test.py`` (``GaussianDropoutTest``);
- ``gaussian_noise_test.py`` (``GaussianNoiseTest``).

The port is textual: each class and method keeps its name and body, with
``layers`` bound to :mod:`fastdrop.keras` instead of ``keras.src.layers``
(so ``layers.Dropout`` is fastdrop's), and Keras's own
``testing.TestCase`` (``run_layer_test``: serialisation round trip, build,
symbolic call, eager call, a compiled training step through ``fit``, mixed
precision on the jax backend; ``spatial_dropout_test.py`` spells it
``test_case.TestCase``, the same class).  The one other change:
``layers.Input`` (not a dropout layer) is ``keras.layers.Input``.  No assertion was dropped or
loosened.

Keras picks its backend at import, so, as ``tests/test_keras.py`` does, a
normal pytest run of this file (``FASTDROP_KERAS_BACKEND`` unset) runs it
again in a subprocess per installed backend (jax, torch, numpy) with
``KERAS_BACKEND`` set, where the classes below are collected.
"""

import importlib.util
import os

import numpy as np
import pytest

_BACKEND = os.environ.get("FASTDROP_KERAS_BACKEND")

if _BACKEND is None:  # the driver
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed", allow_module_level=True)

    from test_keras import keras_backends, run_under_keras_backend

    @pytest.mark.parametrize("backend", keras_backends())
    def test_ported_under_keras_backend(backend):
        print(run_under_keras_backend(backend, ["tests/test_keras_ported.py"]))

    TestCase = object
else:
    keras = pytest.importorskip("keras")
    assert keras.backend.backend() == _BACKEND, (keras.backend.backend(), _BACKEND)

    from keras.src import backend  # noqa: E402
    from keras.src import testing  # noqa: E402

    import fastdrop.keras as layers  # noqa: E402  (the port: layers.X is fastdrop's)

    TestCase = testing.TestCase


# ----------------------------------------------------------------------------
# keras/src/layers/regularization/dropout_test.py
# ----------------------------------------------------------------------------

class DropoutTest(TestCase):
    def test_dropout_basics(self):
        self.run_layer_test(
            layers.Dropout,
            init_kwargs={
                "rate": 0.2,
            },
            input_shape=(2, 3),
            call_kwargs={"training": True},
            expected_output_shape=(2, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
            assert_built_after_instantiation=True,
        )

    def test_dropout_rescaling(self):
        inputs = np.ones((20, 500))
        layer = layers.Dropout(0.5, seed=1337)
        outputs = layer(inputs, training=True)
        outputs = backend.convert_to_numpy(outputs)
        self.assertAllClose(np.mean(outputs), 1.0, atol=0.02)
        self.assertAllClose(np.max(outputs), 2.0)

    def test_dropout_partial_noise_shape_dynamic(self):
        inputs = np.ones((20, 5, 10))
        layer = layers.Dropout(0.5, noise_shape=(None, 1, None))
        outputs = layer(inputs, training=True)
        self.assertAllClose(outputs[:, 0, :], outputs[:, 1, :])

    def test_dropout_partial_noise_shape_static(self):
        inputs = np.ones((20, 5, 10))
        layer = layers.Dropout(0.5, noise_shape=(20, 1, 10))
        outputs = layer(inputs, training=True)
        self.assertAllClose(outputs[:, 0, :], outputs[:, 1, :])

    def test_dropout_negative_rate(self):
        with self.assertRaisesRegex(
            ValueError,
            "Invalid value received for argument `rate`. "
            "Expected a float value between 0 and 1.",
        ):
            _ = layers.Dropout(rate=-0.5)

    def test_dropout_rate_greater_than_one(self):
        with self.assertRaisesRegex(
            ValueError,
            "Invalid value received for argument `rate`. "
            "Expected a float value between 0 and 1.",
        ):
            _ = layers.Dropout(rate=1.5)

    def test_validate_noise_shape_none(self):
        layer = layers.Dropout(0.5, noise_shape=None)
        self.assertIsNone(layer.noise_shape)

    def test_validate_noise_shape_integer_tuple(self):
        layer = layers.Dropout(0.5, noise_shape=(20, 1, 10))
        self.assertEqual(layer.noise_shape, (20, 1, 10))

    def test_validate_noise_shape_none_values(self):
        layer = layers.Dropout(0.5, noise_shape=(None, 1, None))
        self.assertEqual(layer.noise_shape, (None, 1, None))

    def test_validate_noise_shape_cast_to_a_tuple(self):
        layer = layers.Dropout(0.5, noise_shape=[20, 1, 10])
        self.assertEqual(layer.noise_shape, (20, 1, 10))
        self.assertIsInstance(layer.noise_shape, tuple)

    def test_validate_noise_shape_non_iterable(self):
        with self.assertRaisesRegex(
            ValueError,
            "Invalid value received for argument `noise_shape`. "
            "Expected a tuple or list of integers.",
        ):
            layers.Dropout(0.5, noise_shape="Invalid")

    def test_validate_noise_shape_invalid_type(self):
        with self.assertRaisesRegex(
            ValueError,
            "Invalid value received for argument `noise_shape`. "
            "Expected all elements to be integers or None.",
        ):
            layers.Dropout(0.5, noise_shape=(20, 1.5, 10))

    def test_validate_noise_shape_negative_value(self):
        with self.assertRaisesRegex(
            ValueError,
            "Invalid value received for argument `noise_shape`. "
            "Expected all dimensions to be positive integers or None.",
        ):
            layers.Dropout(0.5, noise_shape=(20, -1, 10))

    def test_validate_noise_shape_zero_value(self):
        with self.assertRaisesRegex(
            ValueError,
            "Invalid value received for argument `noise_shape`. "
            "Expected all dimensions to be positive integers or None.",
        ):
            layers.Dropout(0.5, noise_shape=(20, 0, 10))


# ----------------------------------------------------------------------------
# keras/src/layers/regularization/spatial_dropout_test.py
# ----------------------------------------------------------------------------

class SpatialDropoutTest(TestCase):
    def test_spatial_dropout_1d(self):
        self.run_layer_test(
            layers.SpatialDropout1D,
            init_kwargs={"rate": 0.5},
            call_kwargs={"training": True},
            input_shape=(2, 3, 4),
            assert_built_after_instantiation=True,
        )

        self.run_layer_test(
            layers.SpatialDropout1D,
            init_kwargs={"rate": 0.5},
            call_kwargs={"training": False},
            input_shape=(2, 3, 4),
            assert_built_after_instantiation=True,
        )

    def test_spatial_dropout_2d(self):
        self.run_layer_test(
            layers.SpatialDropout2D,
            init_kwargs={"rate": 0.5},
            call_kwargs={"training": True},
            input_shape=(2, 3, 4, 5),
            assert_built_after_instantiation=True,
        )

        self.run_layer_test(
            layers.SpatialDropout2D,
            init_kwargs={"rate": 0.5, "data_format": "channels_first"},
            call_kwargs={"training": True},
            input_shape=(2, 3, 4, 5),
            assert_built_after_instantiation=True,
        )

    def test_spatial_dropout_3d(self):
        self.run_layer_test(
            layers.SpatialDropout3D,
            init_kwargs={"rate": 0.5},
            call_kwargs={"training": True},
            input_shape=(2, 3, 4, 4, 5),
            assert_built_after_instantiation=True,
        )

        self.run_layer_test(
            layers.SpatialDropout3D,
            init_kwargs={"rate": 0.5, "data_format": "channels_first"},
            call_kwargs={"training": True},
            input_shape=(2, 3, 4, 4, 5),
            assert_built_after_instantiation=True,
        )

    def test_spatial_dropout_1D_dynamic(self):
        inputs = keras.layers.Input((3, 2))  # port: Input is Keras's
        layer = layers.SpatialDropout1D(0.5)
        layer(inputs, training=True)

    def test_spatial_dropout_1D_correctness(self):
        inputs = np.ones((10, 3, 10))
        layer = layers.SpatialDropout1D(0.5)
        outputs = layer(inputs, training=True)
        self.assertAllClose(outputs[:, 0, :], outputs[:, 1, :])

    def test_spatial_dropout_2D_dynamic(self):
        inputs = keras.layers.Input((3, 2, 4))  # port: Input is Keras's
        layer = layers.SpatialDropout2D(0.5)
        layer(inputs, training=True)

    def test_spatial_dropout_2D_correctness(self):
        if backend.config.image_data_format() == "channels_last":
            inputs = np.ones((10, 3, 3, 10))
        else:
            inputs = np.ones((10, 10, 3, 3))
        layer = layers.SpatialDropout2D(0.5)
        outputs = layer(inputs, training=True)
        if backend.config.image_data_format() == "channels_last":
            self.assertAllClose(outputs[:, 0, 0, :], outputs[:, 1, 1, :])
        else:
            self.assertAllClose(outputs[:, :, 0, 0], outputs[:, :, 1, 1])

    def test_spatial_dropout_3D_dynamic(self):
        inputs = keras.layers.Input((3, 2, 4, 2))  # port: Input is Keras's
        layer = layers.SpatialDropout3D(0.5)
        layer(inputs, training=True)

    def test_spatial_dropout_3D_correctness(self):
        if backend.config.image_data_format() == "channels_last":
            inputs = np.ones((10, 3, 3, 3, 10))
        else:
            inputs = np.ones((10, 10, 3, 3, 3))
        layer = layers.SpatialDropout3D(0.5)
        outputs = layer(inputs, training=True)
        if backend.config.image_data_format() == "channels_last":
            self.assertAllClose(outputs[:, 0, 0, 0, :], outputs[:, 1, 1, 1, :])
        else:
            self.assertAllClose(outputs[:, :, 0, 0, 0], outputs[:, :, 1, 1, 1])


# ----------------------------------------------------------------------------
# keras/src/layers/regularization/alpha_dropout_test.py
# ----------------------------------------------------------------------------

class AlphaDropoutTest(TestCase):
    def test_alpha_dropout_basics(self):
        self.run_layer_test(
            layers.AlphaDropout,
            init_kwargs={
                "rate": 0.2,
            },
            input_shape=(2, 3),
            call_kwargs={"training": True},
            expected_output_shape=(2, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
            assert_built_after_instantiation=True,
        )

    def test_alpha_dropout_correctness(self):
        inputs = np.ones((20, 500)).astype("float32")
        layer = layers.AlphaDropout(0.3, seed=1337)
        outputs = layer(inputs, training=True)
        self.assertAllClose(
            np.std(backend.convert_to_numpy(outputs)), 1.0, atol=1e-1
        )

    def test_alpha_dropout_partial_noise_shape_dynamic(self):
        inputs = np.ones((20, 5, 10))
        layer = layers.AlphaDropout(0.5, noise_shape=(None, 1, None))
        outputs = layer(inputs, training=True)
        self.assertAllClose(outputs[:, 0, :], outputs[:, 1, :])

    def test_alpha_dropout_partial_noise_shape_static(self):
        inputs = np.ones((20, 5, 10))
        layer = layers.AlphaDropout(0.5, noise_shape=(20, 1, 10))
        outputs = layer(inputs, training=True)
        self.assertAllClose(outputs[:, 0, :], outputs[:, 1, :])

    def test_alpha_dropout_negative_rate(self):
        with self.assertRaisesRegex(
            ValueError,
            "Invalid value received for argument `rate`. "
            "Expected a float value between 0 and 1.",
        ):
            _ = layers.AlphaDropout(rate=-0.5)

    def test_alpha_dropout_rate_greater_than_one(self):
        with self.assertRaisesRegex(
            ValueError,
            "Invalid value received for argument `rate`. "
            "Expected a float value between 0 and 1.",
        ):
            _ = layers.AlphaDropout(rate=1.5)


# ----------------------------------------------------------------------------
# keras/src/layers/regularization/gaussian_dropout_test.py
# ----------------------------------------------------------------------------

class GaussianDropoutTest(TestCase):
    def test_gaussian_dropout_basics(self):
        self.run_layer_test(
            layers.GaussianDropout,
            init_kwargs={
                "rate": 0.2,
            },
            input_shape=(2, 3),
            call_kwargs={"training": True},
            expected_output_shape=(2, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
            assert_built_after_instantiation=True,
        )

    def test_gaussian_dropout_correctness(self):
        inputs = np.ones((20, 500))
        layer = layers.GaussianDropout(0.3, seed=1337)
        outputs = layer(inputs, training=True)
        self.assertAllClose(
            np.std(backend.convert_to_numpy(outputs)),
            np.sqrt(0.3 / (1 - 0.3)),
            atol=0.02,
        )


# ----------------------------------------------------------------------------
# keras/src/layers/regularization/gaussian_noise_test.py
# ----------------------------------------------------------------------------

class GaussianNoiseTest(TestCase):
    def test_gaussian_noise_basics(self):
        self.run_layer_test(
            layers.GaussianNoise,
            init_kwargs={
                "stddev": 0.2,
            },
            input_shape=(2, 3),
            call_kwargs={"training": True},
            expected_output_shape=(2, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
            assert_built_after_instantiation=True,
        )

    def test_gaussian_noise_correctness(self):
        inputs = np.ones((20, 500))
        layer = layers.GaussianNoise(0.3, seed=1337)
        outputs = layer(inputs, training=True)
        self.assertAllClose(
            np.std(backend.convert_to_numpy(outputs)), 0.3, atol=0.02
        )


if _BACKEND is None:  # the driver: the ported classes run in the subprocesses
    del DropoutTest, SpatialDropoutTest, AlphaDropoutTest, GaussianDropoutTest
    del GaussianNoiseTest
