from training.synthetic import render, scenes


def test_scenes_are_deterministic_by_seed() -> None:
    first = [s.caption for s in scenes(50, seed=4)]
    assert first == [s.caption for s in scenes(50, seed=4)]
    assert first != [s.caption for s in scenes(50, seed=5)]


def test_caption_names_objects_left_to_right_and_image_shows_their_colours() -> None:
    for scene in scenes(30, seed=1):
        ordered = sorted(scene.shapes, key=lambda s: s.x)
        assert scene.caption == " and ".join(f"a {s.colour} {s.kind}" for s in ordered)
        image = render(scene, 64)
        for shape in scene.shapes:
            centre = (int(shape.x * 64), int((shape.y + shape.radius * 0.5) * 64))
            assert image.getpixel(centre) != (250, 250, 250)  # the shape is painted there
