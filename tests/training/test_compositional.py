from training.compositional import (
    HELD_OUT_BINDINGS,
    HELD_OUT_TRIPLES,
    SIZES,
    compositional_scenes,
    render_scene,
)
from training.synthetic import COLOURS


def test_scenes_are_deterministic_by_seed_and_split() -> None:
    first = [s.caption for s in compositional_scenes(40, seed=3)]
    assert first == [s.caption for s in compositional_scenes(40, seed=3)]
    assert first != [s.caption for s in compositional_scenes(40, seed=4)]
    assert first != [s.caption for s in compositional_scenes(40, seed=3, split="test")]


def test_test_split_holds_combinations_never_seen_in_training() -> None:
    held = HELD_OUT_BINDINGS | HELD_OUT_TRIPLES
    train = [s.combinations() for s in compositional_scenes(500, seed=0)]
    test = [s.combinations() for s in compositional_scenes(200, seed=0, split="test")]
    assert not set().union(*train) & held
    assert all(c & held for c in test)


def test_hard_negatives_swap_bindings_and_differ_from_true_captions() -> None:
    for scene in compositional_scenes(100, seed=1):
        negatives = scene.hard_negatives()
        assert negatives and not set(negatives) & set(scene.captions)
        words = sorted(scene.caption.split())
        for neg in negatives:
            # the same words, rebound (a relation flip changes exactly one word)
            assert sorted(neg.split()) == words or len(set(neg.split()) ^ set(scene.caption.split())) == 2


def test_render_paints_each_object_in_its_colour_on_the_stated_side() -> None:
    for scene in compositional_scenes(30, seed=2):
        image = render_scene(scene, 64)
        for thing, x, y in ((scene.first, scene.x[0], scene.y[0]), (scene.second, scene.x[1], scene.y[1])):
            centre = (int(x * 64), int((y + SIZES[thing.size] * 0.3) * 64))
            assert image.getpixel(centre) == COLOURS[thing.colour]
        dx, dy = scene.x[1] - scene.x[0], scene.y[1] - scene.y[0]
        expected = {"left of": dx > 0, "right of": dx < 0, "above": dy > 0, "below": dy < 0}
        assert expected[scene.relation]
